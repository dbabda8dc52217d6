// The dashboard shell: sign-in, navigation, the API client, the live
// channel and the view loader. Each view is one module under
// /assets/views/ (listed by /assets/views.json) exporting
//   { id, title, order, nav, route: RegExp, render(ctx, match) }
// where `render` fills ctx.main and may return a cleanup function.
import { h, fill, errorBox } from "/assets/ui.js";

const TOKEN_KEY = "fleetscale.token";

/** A failed API call: the problem document's detail and field errors. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem && (problem.detail || problem.title) ? `${status}: ${problem.detail || problem.title}` : `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

/** Calls the API with the session's token. */
export async function api(path, { method = "GET", body, token } = {}) {
  const t = token ?? sessionStorage.getItem(TOKEN_KEY);
  const headers = { Accept: "application/json" };
  if (t) headers.Authorization = `Bearer ${t}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(`/api/v1${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: "no-store" });
  if (res.status === 204) return null;
  const text = await res.text();
  let v = null;
  try { v = text ? JSON.parse(text) : null; } catch { v = { detail: text }; }
  if (!res.ok) {
    if (res.status === 401 && !token) signOut("Your token was refused; sign in again.");
    throw new ApiError(res.status, v);
  }
  return v;
}

/** Every item of a paged list (up to `max` items, pages of 1000). */
export async function all(path, max = 10000) {
  const items = [];
  let cursor = null;
  const sep = path.includes("?") ? "&" : "?";
  do {
    const page = await api(`${path}${sep}limit=${Math.min(1000, max - items.length)}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor && items.length < max);
  return items;
}

// ---------------------------------------------------------------- live channel
/**
 * The live channel: GET /api/v1/stream read with fetch() (so the token
 * travels in the Authorization header, never in a URL), parsed as
 * server-sent events, reconnecting with Last-Event-ID after a drop.
 */
class Live {
  constructor() { this.handlers = new Map(); this.lastId = null; this.seen = new Set(); this.abort = null; this.retry = 500; }
  on(kind, fn) {
    if (!this.handlers.has(kind)) this.handlers.set(kind, new Set());
    this.handlers.get(kind).add(fn);
    return () => this.handlers.get(kind).delete(fn);
  }
  emit(kind, msg) {
    for (const k of [kind, "*"]) for (const fn of this.handlers.get(k) || []) {
      try { fn(msg); } catch (e) { console.error(e); }
    }
  }
  status(state, text) {
    const el = document.getElementById("live");
    el.dataset.state = state;
    el.textContent = text;
  }
  start() { this.stop(); this.running = true; this.loop(); }
  stop() { this.running = false; if (this.abort) this.abort.abort(); this.abort = null; this.status("off", "offline"); }
  async loop() {
    while (this.running) {
      this.status("connecting", "connecting…");
      this.abort = new AbortController();
      try {
        const headers = { Authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY)}`, Accept: "text/event-stream" };
        if (this.lastId) headers["Last-Event-ID"] = this.lastId;
        const res = await fetch("/api/v1/stream", { headers, signal: this.abort.signal, cache: "no-store" });
        if (res.status === 401) { signOut("Your token was refused; sign in again."); return; }
        if (!res.ok) throw new Error(`stream: HTTP ${res.status}`);
        this.status("on", "live");
        this.retry = 500;
        await this.read(res.body.getReader());
      } catch (e) {
        if (!this.running) return;
      }
      if (!this.running) return;
      this.status("connecting", "reconnecting…");
      await new Promise(r => setTimeout(r, this.retry));
      this.retry = Math.min(this.retry * 2, 10000);
    }
  }
  async read(reader) {
    const dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += dec.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        this.dispatch(block);
      }
    }
  }
  dispatch(block) {
    let event = "message", data = [], id = null;
    for (const line of block.split("\n")) {
      if (line.startsWith(":")) continue;
      const c = line.indexOf(":");
      const field = c < 0 ? line : line.slice(0, c);
      const value = c < 0 ? "" : line.slice(c + 1).replace(/^ /, "");
      if (field === "event") event = value;
      else if (field === "data") data.push(value);
      else if (field === "id") id = value;
    }
    if (!data.length) return;
    if (id) {
      if (this.seen.has(id)) return; // a look-back resend
      this.seen.add(id);
      if (this.seen.size > 5000) this.seen = new Set([...this.seen].slice(-2500));
      this.lastId = id;
    }
    let msg;
    try { msg = JSON.parse(data.join("\n")); } catch { return; }
    window.__fs.events += 1;
    this.emit(event, msg);
  }
}

export const live = new Live();

// ---------------------------------------------------------------- shell
const state = { me: null, views: [], cleanup: null, subs: [] };
window.__fs = { events: 0, renders: [], ready: false };

/** Shows a short message (errors stay longer). */
export function toast(text, error = false) {
  const el = h("div", { class: error ? "error" : "" }, text);
  document.getElementById("toast").append(el);
  setTimeout(() => el.remove(), error ? 8000 : 3500);
}

function signOut(why) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.me = null;
  live.stop();
  location.hash = "#/signin";
  showSignIn(why);
}

function showSignIn(why) {
  document.getElementById("who").textContent = "";
  document.getElementById("signout").hidden = true;
  fill(document.getElementById("nav"));
  const input = h("input", { id: "token", name: "token", type: "password", autocomplete: "off", required: true, "aria-describedby": "token-help" });
  const err = h("div", { id: "signin-error", role: "alert" });
  const form = h("form", { class: "card signin", id: "signin" },
    h("h1", {}, "Sign in"),
    h("label", { for: "token" }, "API token", input),
    h("p", { id: "token-help", class: "muted" }, "A viewer, operator or admin token (fleetscale tokens create). It is kept in this tab's session storage only."),
    err,
    h("button", { type: "submit", class: "primary" }, "Sign in"));
  form.addEventListener("submit", async e => {
    e.preventDefault();
    fill(err);
    try {
      const me = await api("/me", { token: input.value.trim() });
      sessionStorage.setItem(TOKEN_KEY, input.value.trim());
      state.me = me;
      startSession();
      if (location.hash === "#/pools") route(); else location.hash = "#/pools";
    } catch (ex) {
      fill(err, errorBox(ex.status === 401 ? new Error("That token was refused (401): it is unknown or revoked.") : ex));
    }
  });
  fill(document.getElementById("main"), form, why ? h("p", { class: "muted" }, why) : null);
  input.focus();
}

function startSession() {
  const me = state.me;
  document.getElementById("who").textContent = `${me.name} · ${me.role}${me.tenant_id ? ` · tenant ${me.tenant_id.slice(0, 8)}…` : " · all tenants"}`;
  document.getElementById("who").title = me.tenant_id || "global";
  const so = document.getElementById("signout");
  so.hidden = false;
  so.onclick = () => signOut("Signed out.");
  document.body.dataset.role = me.role;
  fill(document.getElementById("nav"), state.views.filter(v => v.nav).map(v => h("a", { href: `#/${v.id}`, "data-view": v.id }, v.title)));
  live.start();
}

async function loadViews() {
  const files = await (await fetch("/assets/views.json")).json();
  const mods = await Promise.all(files.map(f => import(`/assets/${f}`)));
  state.views = mods.map(m => m.default).sort((a, b) => (a.order ?? 100) - (b.order ?? 100));
}

async function route() {
  const main = document.getElementById("main");
  if (state.cleanup) { try { state.cleanup(); } catch (e) { console.error(e); } state.cleanup = null; }
  state.subs.forEach(u => u());
  state.subs = [];
  if (!state.me) { showSignIn(); return; }
  const raw = location.hash.replace(/^#\/?/, "") || "pools";
  const [path, query] = raw.split("?");
  let view = null, match = null;
  for (const v of state.views) { match = path.match(v.route); if (match) { view = v; break; } }
  for (const a of document.querySelectorAll("nav a")) {
    if (view && a.dataset.view === (view.navId || view.id)) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  if (!view) { fill(main, h("h1", {}, "Not found"), h("p", {}, `No view at #/${path}.`)); return; }
  document.title = `${view.title} · fleetscale`;
  main.dataset.view = view.id;
  main.dataset.ready = "false";
  fill(main, h("p", { class: "muted" }, "Loading…"));
  window.scrollTo(0, 0);
  const started = performance.now();
  const token = (state.renderToken = {});
  const ctx = {
    main, api, all, live, me: state.me, toast, h,
    params: new URLSearchParams(query || ""),
    on: (kind, fn) => { const u = live.on(kind, m => { if (state.renderToken === token) fn(m); }); state.subs.push(u); return u; },
    navigate: hash => { location.hash = hash; },
    canOperate: state.me.can_operate, canAdminister: state.me.can_administer,
  };
  try {
    state.cleanup = (await view.render(ctx, match)) || null;
  } catch (e) {
    console.error(e);
    fill(main, h("h1", {}, view.title), errorBox(e));
  }
  if (state.renderToken !== token) return;
  // Measured after the browser has laid out and painted the view.
  await new Promise(r => requestAnimationFrame(() => setTimeout(r, 0)));
  const ms = performance.now() - started;
  window.__fs.renders.push({ view: view.id, ms, path: raw });
  main.dataset.renderMs = ms.toFixed(1);
  main.dataset.ready = "true";
}

async function boot() {
  try { await loadViews(); } catch (e) { fill(document.getElementById("main"), errorBox(e)); return; }
  window.addEventListener("hashchange", route);
  const t = sessionStorage.getItem(TOKEN_KEY);
  if (t) {
    try { state.me = await api("/me"); startSession(); } catch { sessionStorage.removeItem(TOKEN_KEY); }
  }
  window.__fs.ready = true;
  await route();
}

boot();
