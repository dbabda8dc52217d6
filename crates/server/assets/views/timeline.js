// Scaling timeline (phase 93): scaling events over time with the net
// capacity change by region, trigger source and actuation outcome; click an
// event for its metadata (each policy's decision and its reasons). New
// events arrive through the live stream.
import { h, fill, table, time, num, badge, json, chart, kv, row } from "/assets/ui.js";

const actuationLevel = { delivered: "ok", none: "none", pending: "warn", failed: "bad", superseded: "none" };
const columns = [
  { title: "When", cell: e => time(e.created_at) },
  { title: "Pool", cell: e => h("a", { href: `#/pools/${e.pool_id}` }, `${e.region} / ${e.agent_type}`) },
  { title: "Region", cell: e => e.region },
  { title: "Change", num: true, cell: e => `${e.previous_capacity} → ${e.new_capacity} inst.` },
  { title: "Δ", num: true, cell: e => { const d = e.new_capacity - e.previous_capacity; return `${d > 0 ? "+" : ""}${d}`; } },
  { title: "Trigger", cell: e => e.trigger_source },
  { title: "Actuation", cell: e => badge(e.actuation.status, actuationLevel[e.actuation.status]) },
  { title: "Reason", wrap: true, cell: e => e.reason },
];

export default {
  id: "timeline", title: "Scaling timeline", order: 20, nav: true, route: /^timeline$/,
  async render(ctx) {
    const limit = Math.min(10000, Math.max(1, Number(ctx.params.get("limit")) || 1000));
    const shownRows = Math.min(limit, Number(ctx.params.get("rows")) || 500);
    const events = await ctx.all("/scaling-events", limit);
    const chartEl = h("div", { "data-test": "timeline-chart" });
    const detail = h("div", { "data-test": "event-detail", "aria-live": "polite" });
    const trigger = h("select", { id: "f-trigger" }, h("option", { value: "" }, "all"),
      ["autoscaler", "predictive", "schedule", "manual", "rebalance", "recommendation"].map(t => h("option", { value: t }, t)));
    const holder = h("div");
    const count = h("p", { class: "muted", "data-test": "event-count" });
    const show = async e => {
      const full = e.metadata ? e : await ctx.api(`/scaling-events/${e.id}`);
      fill(detail, h("div", { class: "card" }, h("h2", {}, `Event ${full.id}`), kv([
        ["When", time(full.created_at)], ["Pool", `${full.region} / ${full.agent_type}`],
        ["Change", `${full.previous_capacity} → ${full.new_capacity} instances`], ["Trigger", full.trigger_source],
        ["Actuation", `${full.actuation.status}${full.actuation.error ? ` (${full.actuation.error})` : ""}, ${full.actuation.attempts} attempts`],
        ["Reason", full.reason]]),
        h("h2", {}, "Metadata: each policy's decision"), json(full.metadata)));
      detail.scrollIntoView({ block: "nearest" });
    };
    const draw = () => {
      const t = trigger.value;
      const shown = t ? events.filter(e => e.trigger_source === t) : events;
      fill(count, `${shown.length} events${events.length >= limit ? ` (newest ${limit}; #/timeline?limit=10000 for more)` : ""}; table shows the newest ${Math.min(shownRows, shown.length)}`);
      fill(holder, table(columns, shown.slice(0, shownRows), { onRow: (e, tr) => { holder.querySelectorAll("tr.selected").forEach(x => x.classList.remove("selected")); tr.classList.add("selected"); show(e); }, rowAttrs: e => ({ "data-event": e.id }) }));
      drawChart(shown);
    };
    const drawChart = shown => {
      fill(chartEl);
      const asc = shown.slice().reverse();
      const regions = [...new Set(asc.map(e => e.region))].sort();
      if (!asc.length) { chartEl.append(h("p", { class: "muted" }, "No events yet.")); return; }
      const x = [], acc = Object.fromEntries(regions.map(r => [r, 0])), ys = regions.map(() => []);
      for (const e of asc) {
        acc[e.region] += e.new_capacity - e.previous_capacity;
        x.push(Date.parse(e.created_at) / 1000);
        regions.forEach((r, i) => ys[i].push(acc[r]));
      }
      // Carry the totals to now, so the chart spans the time shown.
      x.push(Math.max(Date.now() / 1000, x[x.length - 1] + 1));
      regions.forEach((r, i) => ys[i].push(acc[r]));
      chart(chartEl, { title: "Net capacity change by region since the first event shown", x, series: regions.map((r, i) => ({ label: r, unit: "instances", values: ys[i], step: true })) });
    };
    trigger.addEventListener("change", draw);
    fill(ctx.main, h("h1", {}, "Scaling timeline"),
      h("div", { class: "card" }, chartEl),
      h("div", { class: "filters" }, h("label", { for: "f-trigger" }, "Trigger source", trigger)), count, holder, detail);
    draw();
    const want = ctx.params.get("event");
    if (want) { const e = events.find(x => x.id === want); show(e || { id: want }); }
    ctx.on("scaling", m => {
      if (!m.event || events.some(e => e.id === m.event.id)) return;
      events.unshift(m.event);
      if (trigger.value && trigger.value !== m.event.trigger_source) return;
      const tbody = holder.querySelector("tbody");
      if (!tbody) return;
      const tr = row(columns, m.event, e => show(e), e => ({ "data-event": e.id }));
      tr.dataset.arrived = String(Date.now()); // when the stream delivered it (the browser test reads this)
      tbody.prepend(tr);
      fill(count, `${events.length} events (live)`);
    });
  },
};
