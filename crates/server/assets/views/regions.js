// Region health (phase 92): capacity score and pressure as bars, budget
// remaining, warning index and scaling mode per region, the global risk
// with its conflicts and recommendations, and the pressure chart (the four
// job-kind pressures with their weights in the overall figure). Click a
// region for its state, snapshot and history.
import { h, fill, table, num, cents, badge, bar, kv, time, json, chart } from "/assets/ui.js";

const WEIGHTS = [["posting", 30], ["orchestration", 25], ["creative", 25], ["intel", 20]];
const modeLevel = { normal: "ok", cautious: "warn", throttled: "bad", frozen: "bad" };
const riskLevel = { low: "ok", medium: "warn", high: "bad", critical: "bad" };

export default {
  id: "regions", title: "Regions", order: 60, nav: true, route: /^regions$/,
  async render(ctx) {
    const healthHolder = h("div", { "data-test": "region-health" });
    const riskHolder = h("div");
    const pressureHolder = h("div", { class: "card", "data-test": "pressure-chart" });
    const detail = h("div", { "aria-live": "polite" });
    const showRegion = async id => {
      const [state, snap] = await Promise.all([
        ctx.api(`/regions/${id}/state`),
        ctx.api(`/regions/${id}/snapshot?period_type=hourly&include_history=true&periods=48`).catch(() => null),
      ]);
      const hist = snap ? snap.history.slice().sort((a, b) => Date.parse(a.period_start) - Date.parse(b.period_start)) : [];
      const chartEl = h("div");
      fill(detail, h("div", { class: "card", "data-test": "region-detail" }, h("h2", {}, `Region ${state.region}`),
        h("div", { class: "grid" }, kv([
          ["Scaling mode", badge(state.scaling_mode, modeLevel[state.scaling_mode])], ["Since", time(state.mode_since)],
          ["Capacity score", num(state.capacity_score, "/ 100")], ["Overall pressure", num(state.pressure.overall, "/ 100")],
          ["Warning index", num(state.warning_index, "% of pools")], ["Fatigue", num(state.fatigue_score, "% of 24 h")],
          ["Active tenants", num(state.active_tenants, null, 0)], ["Jobs in queue", num(state.jobs_in_queue, "jobs", 0)],
          ["Updated", time(state.updated_at)]]),
          snap && snap.snapshot ? kv([["Snapshot period", `${snap.snapshot.period_type} from`], ["", time(snap.snapshot.period_start)],
            ["Mean capacity score", num(snap.snapshot.avg_capacity)], ["Peak pressure", num(snap.snapshot.peak_pressure)],
            ["Budget used", cents(snap.snapshot.budget_used_cents)]]) : h("p", { class: "muted" }, "No snapshot yet.")),
        h("h2", {}, "History (hourly snapshots)"), hist.length ? chartEl : h("p", { class: "muted" }, "No hourly snapshots yet: the leader takes one as each hour ends.")));
      if (hist.length) chart(chartEl, { title: "Mean capacity score and peak pressure per hour", x: hist.map(s => Date.parse(s.period_start) / 1000), series: [
        { label: "mean capacity score", unit: "/100", values: hist.map(s => s.avg_capacity), points: true },
        { label: "peak pressure", unit: "/100", values: hist.map(s => s.peak_pressure), points: true }] });
      detail.scrollIntoView({ block: "nearest" });
    };
    const load = async () => {
      const hv = await ctx.api("/regions/health?include_risk=true&sort_by=name&order=asc");
      fill(healthHolder, table([
        { title: "Region", cell: r => r.region },
        { title: "Jurisdiction", cell: r => r.jurisdiction },
        { title: "Capacity score", cell: r => bar(r.capacity_score, 100, r.capacity_score < 10 ? "bad" : r.capacity_score < 30 ? "warn" : "ok", num(r.capacity_score, "/ 100")) },
        { title: "Pressure", cell: r => bar(r.pressure.overall, 100, r.pressure.overall > 75 ? "bad" : r.pressure.overall > 50 ? "warn" : "ok", num(r.pressure.overall, "/ 100")) },
        { title: "Budget remaining", cell: r => bar(100 - r.budget_used_pct, 100, r.budget_used_pct > 90 ? "bad" : r.budget_used_pct > 80 ? "warn" : "ok", `${cents(r.budget_remaining_cents)} (${num(100 - r.budget_used_pct, "%", 0)})`) },
        { title: "Warning index", num: true, cell: r => num(r.warning_index, "%", 0) },
        { title: "Mode", cell: r => badge(r.scaling_mode, modeLevel[r.scaling_mode]) },
        { title: "Risk", cell: r => r.risk === null || r.risk === undefined ? "—" : badge(`${r.risk_level} (${num(r.risk, "", 0)})`, riskLevel[r.risk_level]) },
      ], hv.regions, { onRow: r => showRegion(r.region_id), rowAttrs: r => ({ "data-region": r.region }) }));
      const g = hv.global_risk;
      fill(riskHolder, g ? h("div", { class: "card" }, h("h2", {}, "Global risk"),
        kv([["Score", num(g.score, "/ 100")], ["Level", badge(g.level, riskLevel[g.level])]]),
        g.conflicts.length ? h("ul", {}, g.conflicts.map(c => h("li", {}, badge(c.severity, c.severity === "critical" ? "bad" : "warn"), " ", c.message))) : h("p", { class: "muted" }, "No conflicts."),
        g.recommendations.length ? [h("h2", {}, "Recommendations"), json(g.recommendations)] : null) : null);
      fill(pressureHolder, h("h2", {}, "Pressure by job kind (weight in the overall figure)"),
        h("div", { class: "bars" }, hv.regions.map(r => h("div", { class: "bargroup" }, h("strong", {}, `${r.region}: overall ${num(r.pressure.overall, "/ 100")}`),
          WEIGHTS.map(([k, w]) => h("div", { class: "barrow" }, h("span", { class: "barlabel" }, `${k} ×${w}%`), bar(r.pressure[k], 100, k, num(r.pressure[k], "/ 100"))))))));
    };
    fill(ctx.main, h("h1", {}, "Regions"), healthHolder, riskHolder, pressureHolder, detail);
    await load();
    const t = setInterval(() => load().catch(() => {}), 15000); // region state changes each tick, not through the journal
    return () => clearInterval(t);
  },
};
