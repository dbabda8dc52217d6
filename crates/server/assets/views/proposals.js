// Proposals (recommend mode): pending changes with approve / reject for
// operators; settled ones below. Updates live.
import { h, fill, table, time, num, badge, errorBox } from "/assets/ui.js";

const level = { pending: "warn", approved: "ok", rejected: "none", withdrawn: "none", superseded: "none" };

export default {
  id: "proposals", title: "Proposals", order: 40, nav: true, route: /^proposals$/,
  async render(ctx) {
    let [pending, recent, pools] = await Promise.all([
      ctx.all("/proposals?status=pending", 1000), ctx.api("/proposals?limit=50"), ctx.all("/pools", 10000),
    ]);
    const poolName = new Map(pools.map(p => [p.id, `${p.region} / ${p.agent_type}`]));
    const out = h("div", { "aria-live": "polite" });
    const settle = async (p, verb) => {
      try {
        const r = await ctx.api(`/proposals/${p.id}/${verb}`, { method: "POST", body: { note: `${verb}d from the dashboard` } });
        ctx.toast(`Proposal ${verb}d${r.event ? `: ${r.event.previous_capacity} → ${r.event.new_capacity} instances` : ""}`);
        pending = pending.filter(x => x.id !== p.id);
        draw();
      } catch (e) { fill(out, errorBox(e)); }
    };
    const cols = [
      { title: "Created", cell: p => time(p.created_at) },
      { title: "Pool", cell: p => h("a", { href: `#/pools/${p.pool_id}` }, poolName.get(p.pool_id) || p.pool_id) },
      { title: "Change", num: true, cell: p => `${p.current_capacity} → ${p.target_capacity} inst.` },
      { title: "Status", cell: p => badge(p.status, level[p.status]) },
      { title: "Reason", wrap: true, cell: p => p.reason },
    ];
    const pendingCols = ctx.canOperate ? [...cols, { title: "Decide", cell: p => h("span", { class: "actions" },
      h("button", { type: "button", class: "primary", "data-test": "approve", onclick: () => settle(p, "approve") }, "Approve"),
      h("button", { type: "button", "data-test": "reject", onclick: () => settle(p, "reject") }, "Reject")) }] : cols;
    const pHolder = h("div", { "data-test": "pending" }), rHolder = h("div");
    const draw = () => {
      fill(pHolder, pending.length ? table(pendingCols, pending, { rowAttrs: p => ({ "data-proposal": p.id }) }) : h("p", { class: "muted", "data-test": "no-pending" }, "No pending proposals."));
      fill(rHolder, table(cols, recent.items.filter(p => p.status !== "pending"), { rowAttrs: p => ({ "data-proposal": p.id }) }));
    };
    fill(ctx.main, h("h1", {}, "Proposals"),
      h("p", { class: "muted" }, "Pools in recommend mode propose changes; an operator approves (the change is applied) or rejects them."),
      h("h2", {}, `Pending`), pHolder, out, h("h2", {}, "Recently settled"), rHolder);
    draw();
    ctx.on("proposal", m => {
      const p = m.proposal; if (!p) return;
      pending = pending.filter(x => x.id !== p.id);
      if (p.status === "pending") pending.unshift(p);
      else recent.items = [p, ...recent.items.filter(x => x.id !== p.id)].slice(0, 50);
      draw();
    });
  },
};
