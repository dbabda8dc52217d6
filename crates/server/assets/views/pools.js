// Pools (phase 93 Agent Pool view): every pool the token may see with its
// region, agent type, current / min / max, utilization, health, mode and
// lock; filters by tenant, region and agent type; live capacity updates.
import { h, fill, table, healthBadge, badge, num, row } from "/assets/ui.js";

const columns = [
  { title: "Agent type", cell: p => h("a", { href: `#/pools/${p.id}`, "data-test": "pool-link", "aria-label": `pool ${p.region} / ${p.agent_type}` }, p.agent_type) },
  { title: "Region", cell: p => p.region },
  { title: "Tenant", cell: p => p.tenant_name },
  { title: "Current", num: true, cell: p => h("span", { "data-test": "current" }, num(p.desired_capacity, "inst.", 0)) },
  { title: "Min", num: true, cell: p => num(p.min_capacity, null, 0) },
  { title: "Max", num: true, cell: p => num(p.max_capacity, null, 0) },
  { title: "Utilization", num: true, cell: p => num(p.cap?.utilization, "%") },
  { title: "Health", cell: p => healthBadge(p.cap?.status) },
  { title: "Mode", cell: p => p.mode },
  { title: "Lock", cell: p => (p.safety_lock ? badge("locked", "warn") : badge("unlocked", "none")) },
];

export default {
  id: "pools", title: "Pools", order: 10, nav: true, route: /^pools$/,
  async render(ctx) {
    const [tenants, pools, capacity] = await Promise.all([
      ctx.all("/tenants", 1000), ctx.all("/pools", 10000), ctx.api("/capacity"),
    ]);
    const tname = new Map(tenants.map(t => [t.id, t.name]));
    const cap = new Map(capacity.pools.map(c => [c.pool_id, c]));
    for (const p of pools) { p.tenant_name = tname.get(p.tenant_id) || p.tenant_id; p.cap = cap.get(p.id); }
    const uniq = k => [...new Set(pools.map(p => p[k]))].sort();
    const select = (id, label, values, names) => h("label", { for: id }, label,
      h("select", { id }, h("option", { value: "" }, "all"), values.map(v => h("option", { value: v }, names ? names(v) : v))));
    const f = {
      tenant: select("f-tenant", "Tenant", uniq("tenant_id"), v => tname.get(v) || v),
      region: select("f-region", "Region", uniq("region")),
      agent: select("f-agent", "Agent type", uniq("agent_type")),
    };
    for (const [k, v] of ctx.params) { const s = f[k]?.querySelector("select"); if (s) s.value = v; }
    const holder = h("div");
    const summary = h("p", { class: "muted", "data-test": "pool-count" });
    const draw = () => {
      const want = { tenant_id: f.tenant.querySelector("select").value, region: f.region.querySelector("select").value, agent_type: f.agent.querySelector("select").value };
      const shown = pools.filter(p => Object.entries(want).every(([k, v]) => !v || p[k] === v));
      const health = capacity.overall_health;
      fill(summary, `${shown.length} of ${pools.length} pools · overall health ${num(health, "% optimal")} (thresholds: under ${num(capacity.thresholds.under_pct, "%")}, over ${num(capacity.thresholds.over_pct, "%")})`);
      fill(holder, table(columns, shown, { rowAttrs: p => ({ "data-pool": p.id }) }));
    };
    for (const s of Object.values(f)) s.querySelector("select").addEventListener("change", draw);
    fill(ctx.main, h("h1", {}, "Pools"), h("div", { class: "filters", role: "group", "aria-label": "Filters" }, Object.values(f)), summary, holder);
    draw();
    ctx.on("scaling", m => {
      const e = m.event; if (!e) return;
      const p = pools.find(x => x.id === e.pool_id); if (!p) return;
      p.desired_capacity = e.new_capacity;
      const tr = holder.querySelector(`tr[data-pool="${p.id}"]`);
      if (tr) tr.replaceWith(row(columns, p, null, q => ({ "data-pool": q.id })));
    });
    ctx.on("pool", async m => {
      if (!m.object_id || m.action === "pool.delete") return;
      try {
        const fresh = await ctx.api(`/pools/${m.object_id}`);
        const i = pools.findIndex(x => x.id === fresh.id);
        fresh.tenant_name = tname.get(fresh.tenant_id) || fresh.tenant_id;
        fresh.cap = cap.get(fresh.id);
        if (i >= 0) pools[i] = fresh; else pools.push(fresh);
        draw();
      } catch { /* gone or not visible */ }
    });
  },
};
