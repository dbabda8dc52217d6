// Budgets (phase 92, phase 66): region AI budgets with remaining, spent
// today, spend by job type, the month's forecast and the ledger (paged);
// tenant provider budgets with usage and projection. Updates live.
import { h, fill, table, time, num, cents, bar, kv, badge, errorBox } from "/assets/ui.js";

const usageLevel = { healthy: "ok", warning: "warn", critical: "bad" };

export default {
  id: "budgets", title: "Budgets", order: 50, nav: true, route: /^budgets$/,
  async render(ctx) {
    const [regions, budgets, tenants] = await Promise.all([ctx.all("/regions", 1000), ctx.all("/budgets", 1000), ctx.all("/tenants", 1000)]);
    const rname = new Map(regions.map(r => [r.id, r.name]));
    const regionHolder = h("div", { "data-test": "region-budgets" });
    const detail = h("div", { "aria-live": "polite" });
    const tenantHolder = h("div", { "data-test": "tenant-budgets" });
    let selected = ctx.params.get("region") || (budgets[0] && budgets[0].region_id);
    const drawRegions = () => fill(regionHolder, table([
      { title: "Region", cell: b => h("a", { href: `#/budgets?region=${b.region_id}` }, rname.get(b.region_id) || b.region_id) },
      { title: "Remaining", cell: b => bar(b.remaining_cents, b.monthly_cents || 1, b.remaining_cents < 0.1 * b.monthly_cents ? "bad" : b.remaining_cents < 0.2 * b.monthly_cents ? "warn" : "ok", `${cents(b.remaining_cents)} of ${cents(b.monthly_cents)}`) },
      { title: "Spent today", num: true, cell: b => cents(b.spent_today_cents) },
      { title: "Reserved", num: true, cell: b => cents(b.reserved_cents) },
      { title: "Ledger entries", num: true, cell: b => num(b.transactions, null, 0) },
    ], budgets, { onRow: b => ctx.navigate(`#/budgets?region=${b.region_id}`), rowAttrs: b => ({ "data-region": b.region_id }) }));
    let cursor = null;
    const ledgerBody = h("div");
    const more = h("button", { type: "button", "data-test": "ledger-more" }, "Older entries");
    const loadLedger = async (reset) => {
      if (reset) { cursor = null; fill(ledgerBody); }
      const page = await ctx.api(`/regions/${selected}/budget/transactions?limit=50${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
      cursor = page.next_cursor;
      more.hidden = !cursor;
      ledgerBody.append(table([
        { title: "#", num: true, cell: t => t.seq },
        { title: "When", cell: t => time(t.created_at) },
        { title: "Type", cell: t => t.transaction_type },
        { title: "Amount", num: true, cell: t => cents(t.amount_cents) },
        { title: "Δ balance", num: true, cell: t => `${t.delta_cents >= 0 ? "+" : ""}${cents(t.delta_cents)}` },
        { title: "Balance after", num: true, cell: t => cents(t.balance_after_cents) },
        { title: "Job type", cell: t => t.job_type || "—" },
        { title: "Actor", cell: t => t.actor },
      ], page.items));
    };
    more.onclick = () => loadLedger(false).catch(e => ledgerBody.append(errorBox(e)));
    const drawDetail = async () => {
      if (!selected) { fill(detail, h("p", { class: "muted" }, "No region budgets.")); return; }
      const b = await ctx.api(`/regions/${selected}/budget`);
      const jobs = Object.entries(b.spend_by_job_type || {});
      const maxJob = Math.max(1, ...jobs.map(([, v]) => v));
      fill(detail, h("div", { class: "card", "data-test": "budget-detail" },
        h("h2", {}, `Region ${rname.get(selected) || selected}`),
        h("div", { class: "grid" },
          kv([["Monthly", cents(b.monthly_cents)], ["Remaining", cents(b.remaining_cents)], ["Spent today", cents(b.spent_today_cents)],
            ["Spent this month", cents(b.spent_this_month_cents)], ["Reserved", cents(b.reserved_cents)],
            ["Forecast: month's spend", cents(b.forecast.projected_month_spend_cents)],
            ["Forecast: exhausted", b.forecast.exhausted_at ? time(b.forecast.exhausted_at) : badge("not this month", "ok")]]),
          h("div", {}, h("h2", {}, "Spend by job type"), jobs.length ? jobs.map(([k, v]) => h("div", {}, h("span", {}, k), bar(v, maxJob, "", cents(v)))) : h("p", { class: "muted" }, "No spend yet."))),
        h("h2", {}, "Ledger"), ledgerBody, more));
      await loadLedger(true);
    };
    const drawTenants = async () => {
      const rows = [];
      for (const t of tenants.slice(0, 20)) {
        try {
          const p = await ctx.api(`/budgets/tenants/${t.id}/providers`);
          for (const it of p.items) rows.push({ tenant: t.name, tier: p.tier, ...it });
        } catch { /* not visible */ }
      }
      fill(tenantHolder, rows.length ? table([
        { title: "Tenant", cell: r => r.tenant }, { title: "Tier", cell: r => r.tier }, { title: "Provider", cell: r => r.provider },
        { title: "Used", cell: r => bar(r.used_units, r.allocation_units || 1, usageLevel[r.status], `${num(r.used_units, r.unit, 0)} of ${num(r.allocation_units, r.unit, 0)}`) },
        { title: "Status", cell: r => badge(r.status, usageLevel[r.status]) },
        { title: "Projected", num: true, cell: r => num(r.projected_units, r.unit, 0) },
        { title: "Projected status", cell: r => badge(r.projected_status, usageLevel[r.projected_status]) },
        { title: "Cost so far", num: true, cell: r => cents(r.cost_so_far_cents) },
        { title: "Projected cost", num: true, cell: r => cents(r.projected_cost_cents) },
      ], rows) : h("p", { class: "muted" }, "No tenant provider budgets."));
    };
    fill(ctx.main, h("h1", {}, "Budgets"), h("h2", {}, "Region AI budgets"), regionHolder, detail, h("h2", {}, "Tenant provider budgets"), tenantHolder);
    drawRegions();
    await Promise.all([drawDetail(), drawTenants()]);
    let pending = null;
    ctx.on("budget", () => {
      // Coalesce bursts of ledger entries into one refresh a second.
      if (pending) return;
      pending = setTimeout(async () => {
        pending = null;
        try {
          const fresh = await ctx.all("/budgets", 1000);
          budgets.splice(0, budgets.length, ...fresh);
          drawRegions();
        } catch { /* next time */ }
      }, 1000);
    });
    return () => clearTimeout(pending);
  },
};
