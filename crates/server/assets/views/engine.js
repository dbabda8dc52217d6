// Engine: this replica, the leader, the last tick and its duration,
// actuator health and webhook failures, the background jobs, and the
// alerts the region monitor raised. The stream refreshes it every 5 s.
import { h, fill, kv, table, time, num, badge } from "/assets/ui.js";

export default {
  id: "engine", title: "Engine", order: 70, nav: true, route: /^engine$/,
  async render(ctx) {
    let [engine, alerts] = await Promise.all([ctx.api("/engine"), ctx.api("/alerts?limit=50").catch(() => ({ items: [] }))]);
    const holder = h("div");
    const draw = () => {
      const e = engine;
      const actHealth = e.actuator === "none" ? badge("no actuator (desired capacity read from the API)", "none")
        : e.actuation_failures > 0 ? badge(`${e.actuation_failures} failed deliveries`, "bad") : badge("healthy", "ok");
      fill(holder, h("div", { class: "grid" },
        h("div", { class: "card", "data-test": "engine-card" }, h("h2", {}, "Control loop"), kv([
          ["This replica", e.replica_id],
          ["Leader", e.leader ? badge("this replica leads", "ok") : e.lease_holder ? badge(`follower (leader ${e.lease_holder})`, "none") : badge("no leader", "bad")],
          ["Lease expires", time(e.lease_expires_at)],
          ["Tick interval", num(e.tick_ms, "ms", 0)],
          ["Last tick", time(e.last_tick_at)],
          ["Last tick took", num(e.last_tick_duration_ms, "ms", 2)],
          ["Ticks (this replica)", num(e.ticks, null, 0)],
          ["Failed ticks", e.tick_failures ? badge(String(e.tick_failures), "bad") : badge("0", "ok")],
        ])),
        h("div", { class: "card" }, h("h2", {}, "Actuator"), kv([
          ["Kind", e.actuator], ["Health", actHealth],
          ["Deliveries", num(e.actuations, null, 0)], ["Webhook failures", num(e.actuation_failures, null, 0)],
        ]))),
        h("h2", {}, "Background jobs"),
        table([
          { title: "Job", cell: t => t.name },
          { title: "State", cell: t => badge(t.state, t.state === "running" ? "ok" : t.state === "stopped" ? "none" : "bad") },
          { title: "Restarts", num: true, cell: t => num(t.restarts, null, 0) },
          { title: "Last error", wrap: true, cell: t => t.last_error || "—" },
        ], e.tasks),
        h("h2", {}, "Alerts"),
        alerts.items.length ? table([
          { title: "When", cell: a => time(a.created_at) },
          { title: "Kind", cell: a => `${a.kind}${a.region ? ` (${a.region})` : ""}` },
          { title: "Level", cell: a => badge(a.level, a.level === "critical" ? "bad" : "warn") },
          { title: "Message", wrap: true, cell: a => a.message },
          { title: "Delivery", cell: a => a.delivery },
        ], alerts.items) : h("p", { class: "muted" }, "No alerts."));
    };
    fill(ctx.main, h("h1", {}, "Engine"), holder);
    draw();
    ctx.on("engine", m => { if (m.engine) { engine = m.engine; draw(); } });
  },
};
