// One pool: capacity and its metric over time, policies, the last
// decisions with their reasons, a dry-run plan, scale (operator) and
// lock / unlock (admin). Updates live from the stream.
import { h, fill, kv, table, time, num, badge, json, chart, errorBox, row } from "/assets/ui.js";

const eventColumns = [
  { title: "When", cell: e => time(e.created_at) },
  { title: "Change", num: true, cell: e => `${e.previous_capacity} → ${e.new_capacity} inst.` },
  { title: "Trigger", cell: e => e.trigger_source },
  { title: "Actuation", cell: e => e.actuation.status },
  { title: "Reason", wrap: true, cell: e => e.reason },
];

export default {
  id: "pool", title: "Pool", order: 11, nav: false, navId: "pools", route: /^pools\/([\w-]+)$/,
  async render(ctx, match) {
    const id = match[1];
    let [pool, events, samples, policies] = await Promise.all([
      ctx.api(`/pools/${id}`),
      ctx.api(`/scaling-events?pool_id=${id}&limit=200`),
      ctx.api(`/pools/${id}/samples?window_seconds=3600&limit=5000`),
      ctx.api(`/pools/${id}/policies`).catch(() => null),
    ]);
    events = events.items;
    const head = h("div");
    const chartEl = h("div", { "data-test": "pool-chart" });
    const evHolder = h("div", { "data-test": "pool-events" });
    const out = h("div", { "aria-live": "polite" });
    const drawHead = () => fill(head,
      h("h1", {}, `Pool ${pool.region} / ${pool.agent_type}`),
      h("div", { class: "grid" },
        h("div", { class: "card" }, kv([
          ["Current", h("strong", { "data-test": "pool-current" }, num(pool.desired_capacity, "instances", 0))],
          ["Bounds", `${pool.min_capacity} – ${pool.max_capacity} instances`],
          ["Capacity per instance", num(pool.capacity_per_instance, `${pool.metric}/inst.`)],
          ["Mode", pool.mode],
          ["Safety lock", pool.safety_lock ? badge("locked", "warn") : badge("unlocked", "none")],
          ["Last scaled", time(pool.last_scaled_at)],
          ["Metrics", pool.metrics_stale
            ? badge(pool.metrics_error ? `source failing: ${pool.metrics_error.message}` : "stale: holding scale-in", "warn")
            : badge("fresh", "none")],
          ["Metric source", h("span", { "data-test": "pool-metric-source" }, pool.metric_source
            ? `${pool.metric_source.type}: ${pool.metric_source.query}${pool.metric_source.url ? ` @ ${pool.metric_source.url}` : ""}`
            : "pushed samples")],
          ["Kubernetes target", h("span", { "data-test": "pool-target" }, pool.target
            ? `${pool.target.kind}/${pool.target.namespace}/${pool.target.name}` : "none")],
          ["Tenant", pool.tenant_id],
          ["Id", pool.id],
        ])),
        h("div", { class: "card" }, h("h2", {}, "Threshold policy"), kv([
          ["Scale up above", num(pool.scaling_policy.scale_up_threshold, "%")],
          ["Scale down below", num(pool.scaling_policy.scale_down_threshold, "%")],
          ["Cooldown", num(pool.scaling_policy.cooldown_seconds, "s", 0)],
          ["Step", num(pool.scaling_policy.increment, "inst.", 0)],
          ["Window", num(pool.scaling_policy.window_seconds, "s", 0)],
        ]))));
    const drawChart = () => {
      fill(chartEl);
      const now = Date.now() / 1000, from = samples.from_ms / 1000;
      // Capacity as a step line from the events (oldest first), metric as points.
      const evs = events.filter(e => Date.parse(e.created_at) / 1000 >= from).slice().reverse();
      let cap = evs.length ? evs[0].previous_capacity : pool.desired_capacity;
      const cx = [from], cy = [cap];
      for (const e of evs) { cx.push(Date.parse(e.created_at) / 1000); cy.push(e.new_capacity); }
      cx.push(now); cy.push(pool.desired_capacity);
      // One x axis: merge the two series' times.
      const xs = [...new Set([...cx, ...samples.points.map(p => p.ts_ms / 1000)])].sort((a, b) => a - b);
      const capAt = t => { let v = cy[0]; for (let i = 0; i < cx.length && cx[i] <= t; i++) v = cy[i]; return v; };
      const pm = new Map(samples.points.map(p => [p.ts_ms / 1000, p.value]));
      chart(chartEl, {
        title: `Capacity and ${samples.metric}, last hour`, x: xs,
        series: [
          { label: "capacity", unit: "instances", values: xs.map(capAt), step: true },
          { label: samples.metric, unit: pool.metric === "latency_ms" ? "ms" : "per s", scale: "m", values: xs.map(t => pm.get(t) ?? null), points: true },
        ],
      });
    };
    const drawEvents = () => fill(evHolder, events.length ? table(eventColumns, events.slice(0, 50), { onRow: e => ctx.navigate(`#/timeline?event=${e.id}`) }) : h("p", { class: "muted" }, "No decisions yet."));
    const controls = h("div", { class: "card" }, h("h2", {}, "Actions"));
    const planBtn = h("button", { type: "button", "data-test": "plan" }, "Plan (dry run)");
    planBtn.onclick = async () => {
      try { const p = await ctx.api(`/pools/${id}/plan`, { method: "POST" }); fill(out, h("h2", {}, "Plan"), kv([["Current", num(p.current, "inst.", 0)], ["Target", num(p.target, "inst.", 0)], ["Should scale", p.should_scale ? "yes" : "no"], ["Policy", p.policy], ["Confidence", num(p.confidence * 100, "%")], ["Reason", p.reason]])); }
      catch (e) { fill(out, errorBox(e)); }
    };
    const acts = h("div", { class: "actions" });
    if (ctx.canOperate) {
      acts.append(planBtn);
      const cap = h("input", { id: "scale-capacity", type: "number", min: pool.min_capacity, max: pool.max_capacity, value: pool.desired_capacity, required: true });
      const reason = h("input", { id: "scale-reason", type: "text", value: "manual change from the dashboard", required: true });
      const form = h("form", { class: "actions", "data-test": "scale-form" },
        h("label", { for: "scale-capacity" }, "Capacity (instances)", cap),
        h("label", { for: "scale-reason" }, "Reason", reason),
        h("button", { type: "submit", class: "primary", "data-test": "scale" }, "Scale"));
      form.addEventListener("submit", async e => {
        e.preventDefault();
        try {
          const r = await ctx.api("/scale", { method: "POST", body: { tenant_id: pool.tenant_id, pool_id: id, capacity: Number(cap.value), reason: reason.value } });
          ctx.toast(r.clamped ? `Scaled to ${r.pool.desired_capacity} (clamped to bounds)` : `Scaled to ${r.pool.desired_capacity}`);
          fill(out);
        } catch (ex) { fill(out, errorBox(ex)); }
      });
      acts.append(form);
    }
    if (ctx.canAdminister) {
      const lock = h("button", { type: "button", class: "danger", "data-test": "lock" }, pool.safety_lock ? "Unlock" : "Lock");
      lock.onclick = async () => {
        try { pool = await ctx.api(`/pools/${id}/safety-lock`, { method: "PUT", body: { locked: !pool.safety_lock } }); lock.textContent = pool.safety_lock ? "Unlock" : "Lock"; drawHead(); }
        catch (e) { fill(out, errorBox(e)); }
      };
      acts.append(lock);
    }
    if (!ctx.canOperate) acts.append(h("p", { class: "muted" }, `Your ${ctx.me.role} token can look but not change this pool.`));
    controls.append(acts, out);
    fill(ctx.main, head, h("div", { class: "card" }, chartEl), controls,
      h("h2", {}, "Last decisions"), evHolder,
      h("h2", {}, "Combined policies"), policies && policies.policies ? json(policies) : h("p", { class: "muted" }, "None: the threshold policy above decides."));
    drawHead(); drawChart(); drawEvents();
    ctx.on("scaling", m => {
      if (!m.event || m.event.pool_id !== id) return;
      events.unshift(m.event);
      pool.desired_capacity = m.event.new_capacity;
      pool.last_scaled_at = m.event.created_at;
      drawHead(); drawEvents(); drawChart();
    });
    ctx.on("pool", async m => {
      if (m.object_id !== id || m.action === "pool.scale") return;
      try { pool = await ctx.api(`/pools/${id}`); drawHead(); } catch { /* deleted */ }
    });
  },
};
