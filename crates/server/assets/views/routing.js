// Routing decision explorer (phase 93): search recorded decisions by
// tenant, workload type, selected region and time; a decision's reason,
// candidates, SLA and performance context, and replay with today's code.
import { h, fill, table, num, badge, kv, time, json, errorBox } from "/assets/ui.js";

export default {
  id: "routing", title: "Routing", order: 65, nav: true, route: /^routing$/,
  async render(ctx) {
    const tenants = await ctx.all("/tenants", 1000);
    const regions = await ctx.all("/regions", 1000);
    const tname = new Map(tenants.map(t => [t.id, t.name]));
    const f = {
      tenant_id: h("select", { id: "r-tenant" }, h("option", { value: "" }, "all"), tenants.map(t => h("option", { value: t.id }, t.name))),
      workload_type: h("input", { id: "r-workload", type: "text", placeholder: "e.g. chat" }),
      selected_region: h("select", { id: "r-region" }, h("option", { value: "" }, "any"), regions.map(r => h("option", { value: r.name }, r.name))),
      since: h("input", { id: "r-since", type: "datetime-local" }),
    };
    const results = h("div", { "data-test": "routing-results" });
    const detail = h("div", { "aria-live": "polite" });
    const show = async id => {
      try {
        const d = await ctx.api(`/routing/${id}`);
        const r = d; // the decision, flattened, with its recorded `input`
        const replayOut = h("div");
        const replay = ctx.canOperate ? h("button", { type: "button", "data-test": "replay", onclick: async () => {
          try { const v = await ctx.api(`/routing/${id}/replay`, { method: "POST" }); fill(replayOut, v.same ? badge(`same region today: ${v.selected_region}`, "ok") : badge(`today: ${v.selected_region ?? v.code}, recorded: ${v.recorded_region}`, "warn")); }
          catch (e) { fill(replayOut, errorBox(e)); }
        } }, "Replay with today's code") : null;
        fill(detail, h("div", { class: "card", "data-test": "routing-detail" }, h("h2", {}, `Decision ${r.id}`),
          kv([["When", time(r.created_at)], ["Tenant", tname.get(r.tenant_id) || r.tenant_id], ["Workload / agent", `${r.workload_type} / ${r.agent_type}`],
            ["Selected", h("strong", {}, r.selected_region)], ["Score", num(r.score, "", 2)], ["Reason", r.reason]]),
          h("h2", {}, "Candidates"),
          table([
            { title: "Region", cell: c => c.region },
            { title: "Compliant", cell: c => c.compliant ? badge("yes", "ok") : badge("no", "bad") },
            { title: "Eligible", cell: c => c.eligible ? badge("yes", "ok") : badge("no", "bad") },
            { title: "Excluded by", cell: c => c.excluded_by || "—" },
            { title: "Ejected until", cell: c => time(c.ejected_until) },
            { title: "Score", num: true, cell: c => num(c.score, "", 2) },
          ], r.candidates),
          h("div", { class: "grid" },
            h("div", {}, h("h2", {}, "SLA context"), kv(Object.entries(r.sla_context).map(([k, v]) => [k, v === null ? "—" : String(v)]))),
            h("div", {}, h("h2", {}, "Performance context"), kv([["latency", num(r.performance_context.latency_ms, "ms")], ["latency samples", num(r.performance_context.latency_samples, null, 0)],
              ["latency score", num(r.performance_context.latency_score, "", 2)], ["capacity score", num(r.performance_context.capacity_score, "/ 100")],
              ["spare instances", `${r.performance_context.spare_instances} of ${r.performance_context.max_instances}`], ["policy", r.performance_context.policy]]))),
          h("div", { class: "actions" }, replay, replayOut),
          h("h2", {}, "Recorded input"), json(d.input)));
        detail.scrollIntoView({ block: "nearest" });
      } catch (e) { fill(detail, errorBox(e)); }
    };
    const search = async () => {
      const q = new URLSearchParams();
      for (const [k, el] of Object.entries(f)) {
        if (!el.value) continue;
        q.set(k, k === "since" ? new Date(el.value).toISOString().replace(/\.\d+Z$/, "Z") : el.value);
      }
      q.set("limit", "200");
      try {
        const page = await ctx.api(`/routing?${q}`);
        fill(results, page.items.length ? table([
          { title: "When", cell: r => time(r.created_at) },
          { title: "Tenant", cell: r => tname.get(r.tenant_id) || r.tenant_id },
          { title: "Workload", cell: r => r.workload_type },
          { title: "Agent type", cell: r => r.agent_type },
          { title: "Selected region", cell: r => r.selected_region },
          { title: "Score", num: true, cell: r => num(r.score, "", 2) },
          { title: "Reason", wrap: true, cell: r => r.reason },
        ], page.items, { onRow: r => show(r.id), rowAttrs: r => ({ "data-decision": r.id }) }) : h("p", { class: "muted", "data-test": "no-decisions" }, "No routing decisions match."));
      } catch (e) { fill(results, errorBox(e)); }
    };
    const form = h("form", { class: "filters", role: "search" },
      h("label", { for: "r-tenant" }, "Tenant", f.tenant_id), h("label", { for: "r-workload" }, "Workload type", f.workload_type),
      h("label", { for: "r-region" }, "Selected region", f.selected_region), h("label", { for: "r-since" }, "Since (local time)", f.since),
      h("button", { type: "submit", class: "primary" }, "Search"));
    form.addEventListener("submit", e => { e.preventDefault(); search(); });
    fill(ctx.main, h("h1", {}, "Routing decisions"), form, results, detail);
    await search();
  },
};
