// Small DOM helpers shared by the shell and the views: an element builder
// (text is always set as text, never parsed as HTML), times in the
// browser's zone with UTC on hover, numbers with their units, status
// badges that say their state in words, tables and charts.
import uPlot from "/assets/vendor/uplot/uPlot.esm.js";

/** Builds an element: h("a", {href: "#/x", class: "c", onclick: f}, "text", child). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

/** Replaces an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const dtf = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

/** A <time> in the browser's zone, its UTC form on hover. `t`: RFC 3339 or Unix ms. */
export function time(t) {
  if (t === null || t === undefined || t === "") return h("span", { class: "muted" }, "—");
  const d = typeof t === "number" ? new Date(t) : new Date(t);
  if (isNaN(d)) return String(t);
  const utc = d.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
  return h("time", { datetime: d.toISOString(), title: utc }, dtf.format(d));
}

/** A number with its unit ("12.5 %", "3 instances", "1,250 ¢"). */
export function num(v, unit, digits = 1) {
  if (v === null || v === undefined || Number.isNaN(v)) return "—";
  const s = Number(v).toLocaleString(undefined, { maximumFractionDigits: digits });
  return unit ? `${s} ${unit}` : s;
}

/** Money in integer cents as dollars with the cents unit kept exact. */
export function cents(v) {
  if (v === null || v === undefined) return "—";
  return `$${(v / 100).toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`;
}

/** A badge whose text says the state; `level` is ok|warn|bad|none (colour is extra). */
export function badge(text, level) {
  return h("span", { class: `status ${level || "none"}` }, text);
}

/** The badge of a capacity status (under / optimal / over). */
export function healthBadge(status) {
  const level = { optimal: "ok", under: "warn", over: "bad" }[status] || "none";
  const text = { optimal: "optimal", under: "under-used", over: "over capacity" }[status] || (status || "no data");
  return badge(text, level);
}

/** A horizontal bar for a 0-100 value, with the value as text. */
export function bar(value, max = 100, level, label) {
  const pct = Math.max(0, Math.min(100, (100 * (value || 0)) / (max || 1)));
  const inner = h("span");
  inner.style.width = `${pct}%`; // CSSOM, allowed by the CSP (attributes are not)
  return h("div", { class: `bar ${level || ""}`, role: "img", "aria-label": label || `${num(value)} of ${num(max)}` },
    inner, h("em", {}, label || num(value)));
}

/**
 * A table: columns [{title, cell: row => node|string, num?: bool}], rows;
 * `onRow(row, tr)` makes rows clickable (Enter works too).
 */
export function table(columns, rows, { onRow, rowAttrs, caption } = {}) {
  const thead = h("thead", {}, h("tr", {}, columns.map(c => h("th", { scope: "col", class: c.num ? "num" : null }, c.title))));
  const tbody = h("tbody");
  const frag = document.createDocumentFragment();
  for (const r of rows) frag.append(row(columns, r, onRow, rowAttrs));
  tbody.append(frag);
  const t = h("table", {}, caption ? h("caption", { class: "muted" }, caption) : null, thead, tbody);
  return h("div", { class: "scroll" }, t);
}

/** One table row (for views that insert rows live). */
export function row(columns, r, onRow, rowAttrs) {
  const tr = h("tr", rowAttrs ? rowAttrs(r) : {});
  for (const c of columns) {
    const v = c.cell(r);
    tr.append(h("td", { class: c.num ? "num" : c.wrap ? "wrap" : null }, v));
  }
  if (onRow) {
    tr.classList.add("clickable");
    tr.tabIndex = 0;
    tr.addEventListener("click", () => onRow(r, tr));
    tr.addEventListener("keydown", e => { if (e.key === "Enter") onRow(r, tr); });
  }
  return tr;
}

/** A definition list of [label, value] pairs. */
export function kv(pairs) {
  return h("dl", { class: "kv" }, pairs.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

/** Pretty JSON in a <pre>. */
export function json(v) {
  return h("pre", { class: "json", tabindex: "0" }, JSON.stringify(v, null, 2));
}

/** An error box naming what failed (problem+json detail and field errors). */
export function errorBox(e) {
  const fields = (e.problem && e.problem.errors) || [];
  return h("div", { class: "error-box", role: "alert" }, e.message,
    fields.length ? h("ul", {}, fields.map(f => h("li", {}, `${f.field}: ${f.rule}`))) : null);
}

const palette = ["#1f5fbf", "#c2410c", "#15803d", "#7e22ce", "#b91c1c", "#0e7490", "#a16207", "#4d7c0f"];

/** A colour per series index. */
export function colour(i) { return palette[i % palette.length]; }

/**
 * A uPlot time-series chart in `el`: x in Unix seconds, series
 * [{label, unit, values, scale?, step?, points?}]. Sized to its container
 * and resized with it. Returns the uPlot instance.
 */
export function chart(el, { title, x, series, height = 260, bars = false }) {
  el.classList.add("chart");
  const width = Math.max(280, el.clientWidth || el.parentElement.clientWidth || 600);
  const scales = { x: { time: true } };
  const axes = [{}];
  const seen = [];
  for (const s of series) {
    const sc = s.scale || "y";
    if (!seen.includes(sc)) {
      seen.push(sc);
      scales[sc] = { auto: true };
      axes.push({ scale: sc, side: seen.length === 1 ? 3 : 1, label: s.unit, grid: { show: seen.length === 1 }, size: 60 });
    }
  }
  const opts = {
    title, width, height, scales, axes,
    series: [{ label: "time" }, ...series.map((s, i) => ({
      label: s.unit ? `${s.label} (${s.unit})` : s.label,
      scale: s.scale || "y",
      stroke: colour(i),
      width: 2,
      fill: bars ? colour(i) + "55" : undefined,
      points: { show: s.points ?? false, size: 5 },
      paths: s.step ? uPlot.paths.stepped({ align: 1 }) : bars ? uPlot.paths.bars({ size: [0.6, 40] }) : undefined,
      value: (u, v) => (v === null || v === undefined ? "—" : num(v, s.unit, 2)),
    }))],
  };
  const u = new uPlot(opts, [x, ...series.map(s => s.values)], el);
  const ro = new ResizeObserver(() => {
    const w = Math.max(280, el.clientWidth);
    if (Math.abs(w - u.width) > 4) u.setSize({ width: w, height });
  });
  ro.observe(el);
  u._ro = ro;
  return u;
}
