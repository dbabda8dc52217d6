// Capacity and SLA alignment (phase 93): per region, the capacity its
// pools need to hold their load at their scale-up threshold (the SLA's
// utilization target) against what is provisioned and the most that may
// be, the gap, and the action to take.
//
//   load (per pool)     = utilization × current × capacity per instance
//   required instances  = max(min, ceil(load ÷ (capacity per instance × scale-up threshold)))
//   gap                 = provisioned − required (negative: short)
//   headroom            = Σ max − required (negative: the bounds cannot meet the target)
import { h, fill, table, num, badge, bar } from "/assets/ui.js";

function action(r) {
  if (r.unknown === r.pools) return ["no metrics: hold (never scale down without data)", "none"];
  if (r.required > r.max) return [`raise max capacity by ${r.required - r.max} instances, or route work to another region`, "bad"];
  if (r.gap < 0) return [`scale up by ${-r.gap} instances`, "warn"];
  if (r.gap > Math.max(1, Math.ceil(0.25 * r.required))) return [`scale down by ${r.gap} instances`, "warn"];
  return ["aligned: no action", "ok"];
}

function groupedBars(rows) {
  const max = Math.max(1, ...rows.map(r => Math.max(r.required, r.provisioned, r.max)));
  const series = [["required", "req"], ["provisioned", "prov"], ["max", "avail"]];
  return h("div", { class: "bars", role: "group", "aria-label": "Instances by region" },
    rows.map(r => h("div", { class: "bargroup" }, h("strong", {}, r.region),
      series.map(([k, cls]) => h("div", { class: "barrow" }, h("span", { class: "barlabel" }, k === "max" ? "available" : k),
        bar(r[k], max, cls, num(r[k], "instances", 0)))))));
}

export default {
  id: "capacity", title: "Capacity & SLA", order: 30, nav: true, route: /^capacity$/,
  async render(ctx) {
    const body = h("div");
    const load = async () => {
      const [pools, cap] = await Promise.all([ctx.all("/pools", 10000), ctx.api("/capacity")]);
      const byId = new Map(pools.map(p => [p.id, p]));
      const regions = new Map();
      for (const c of cap.pools) {
        const p = byId.get(c.pool_id); if (!p) continue;
        const r = regions.get(c.region) || { region: c.region, pools: 0, unknown: 0, provisioned: 0, required: 0, max: 0, load: 0 };
        const target = (p.scaling_policy.scale_up_threshold || 80) / 100;
        const load = c.utilization === null || c.utilization === undefined ? null : (c.utilization / 100) * c.current * p.capacity_per_instance;
        r.pools += 1; r.provisioned += c.current; r.max += c.max;
        if (load === null) { r.unknown += 1; r.required += c.current; }
        else { r.load += load; r.required += Math.max(c.min, Math.ceil(load / (p.capacity_per_instance * target))); }
        regions.set(c.region, r);
      }
      const rows = [...regions.values()].sort((a, b) => a.region.localeCompare(b.region));
      for (const r of rows) { r.gap = r.provisioned - r.required; r.headroom = r.max - r.required; [r.action, r.level] = action(r); }
      fill(body, h("div", { class: "card", "data-test": "capacity-chart" }, h("h2", {}, "Instances by region"), groupedBars(rows)),
        table([
          { title: "Region", cell: r => r.region },
          { title: "Pools", num: true, cell: r => num(r.pools, null, 0) },
          { title: "Load", num: true, cell: r => num(r.load, "units/s") },
          { title: "Required", num: true, cell: r => num(r.required, "inst.", 0) },
          { title: "Provisioned", num: true, cell: r => num(r.provisioned, "inst.", 0) },
          { title: "Available (Σ max)", num: true, cell: r => num(r.max, "inst.", 0) },
          { title: "Gap", num: true, cell: r => `${r.gap > 0 ? "+" : ""}${r.gap} inst.` },
          { title: "Headroom", num: true, cell: r => `${r.headroom} inst.` },
          { title: "Recommended action", wrap: true, cell: r => badge(r.action, r.level) },
        ], rows, { rowAttrs: r => ({ "data-region": r.region }) }));
    };
    fill(ctx.main, h("h1", {}, "Capacity and SLA alignment"),
      h("p", { class: "muted" }, "Required = the instances each pool needs to carry its window-mean load at its scale-up threshold (never below its minimum); pools without metrics count at their current size. Gap = provisioned − required; headroom = available − required."),
      body);
    await load();
    let t = null;
    ctx.on("scaling", () => { if (!t) t = setTimeout(() => { t = null; load().catch(() => {}); }, 2000); });
    return () => clearTimeout(t);
  },
};
