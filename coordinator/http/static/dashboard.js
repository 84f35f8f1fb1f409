// The coordinator's health dashboard: reads the JSON routes every few seconds and
// draws them. Every value from the API goes into the page as text (textContent or an
// attribute), never as markup: signal ids and reasons come from outside.
"use strict";

const REFRESH_MS = 3000;

function $(id) { return document.getElementById(id); }

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function fmt(value) {
  if (value === null || value === undefined || value === "") return "—";
  if (typeof value === "number") {
    return Number.isInteger(value) ? String(value) : String(Number(value.toPrecision(8)));
  }
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

function fill(tableId, rows, cells) {
  const body = $(tableId).tBodies[0];
  const fresh = document.createElement("tbody");
  for (const row of rows) {
    const tr = document.createElement("tr");
    for (const cell of cells(row)) {
      const styled = cell instanceof Cell;
      tr.appendChild(el("td", fmt(styled ? cell.value : cell), styled ? cell.className : ""));
    }
    if (row && typeof row === "object" && row.symbol) tr.setAttribute("data-symbol", String(row.symbol));
    fresh.appendChild(tr);
  }
  if (rows.length === 0) {
    const tr = document.createElement("tr");
    const td = el("td", "none", "muted");
    td.colSpan = $(tableId).tHead.rows[0].cells.length;
    tr.appendChild(td);
    fresh.appendChild(tr);
  }
  body.replaceWith(fresh);
}

// A table cell with a class; any other value is a plain cell.
class Cell {
  constructor(value, className) { this.value = value; this.className = className; }
}
const num = (value) => new Cell(value, "num");

// An ISO time from the API, shortened to the time of day (UTC) with the date as a tooltip.
function when(iso) {
  const at = typeof iso === "string" ? Date.parse(iso) : NaN;
  return Number.isNaN(at) ? iso : new Date(at).toISOString().slice(11, 19) + "Z";
}

// ``accept``: statuses other than 2xx whose body is an answer (503 from /health).
async function get(path, accept) {
  const answer = await fetch(path, {
    headers: { Accept: "application/json" }, cache: "no-store", signal: AbortSignal.timeout(10000),
  });
  const body = await answer.json().catch(() => null);
  if (!answer.ok && !(accept && accept.includes(answer.status) && body)) {
    const why = body && body.error ? body.error : answer.statusText;
    throw new Error(path + ": " + answer.status + " " + why);
  }
  return body;
}

// --- sections ------------------------------------------------------------------------

function showStatus(status) {
  const trading = status.trading || {};
  $("state").textContent = trading.state || "?";
  $("state").setAttribute("data-state", String(trading.state || ""));
  $("trading-state").textContent = trading.state || "?";
  $("buys").textContent = trading.buys_allowed ? "allowed" : "blocked";
  $("sells").textContent = trading.sells_allowed ? "allowed" : "blocked";
  const mode = $("mode");
  mode.textContent = status.paper ? "paper" : "live";
  mode.className = "badge " + (status.paper ? "paper" : "live");
  const reasons = $("trading-reasons");
  reasons.replaceChildren();
  for (const reason of trading.reasons || []) {
    reasons.appendChild(el("li", reason.code + (reason.detail ? ": " + reason.detail : "")));
  }
  const kill = status.kill_switch || {};
  $("kill-switch").textContent = kill.halted
    ? "Halted by the operator: " + fmt(kill.reason) + " (exits " + fmt(kill.exits) + ")"
    : "Kill switch off.";
  const deps = Object.entries(status.dependencies || {}).map(([name, dep]) => ({ name, ...dep }));
  fill("dependencies", deps, (d) => [d.name, d.status, d.breaker, d.target]);
}

function showHealth(health) {
  const badge = $("health");
  badge.textContent = health.status || "?";
  badge.setAttribute("data-health", String(health.status || ""));
  const problems = $("problems");
  problems.replaceChildren();
  for (const problem of health.problems || []) problems.appendChild(el("li", fmt(problem)));
}

function showStats(stats) {
  const store = stats.store || {};
  $("counts").textContent = "Since start: " + fmt(stats.signals_received) + " signals received, " +
    fmt(stats.signals_processed) + " decided (" + fmt(stats.signals_rejected) + " rejected), " +
    fmt(stats.orders_sent) + " orders sent, " + fmt(stats.orders_unknown) + " unknown; " +
    fmt(stats.active_positions) + " positions, " + fmt(stats.trailing_stops_active) + " stops, " +
    fmt(stats.universe_size) + " symbols in the universe; store " +
    (store.postgres_ok ? "up" : "down") + ", " + fmt(store.pending) + " pending, " +
    fmt(store.journaled) + " journaled.";
}

function showSupervisor(tree) {
  const intensity = tree.restart_intensity || {};
  $("supervisor").textContent = "Supervisor " + fmt(tree.state) + ", " + fmt(tree.strategy) +
    ", restarts in window " + fmt(intensity.restarts_in_window) + "/" + fmt(intensity.max_restarts) +
    (tree.failure ? ", failure: " + fmt(tree.failure) : "");
  fill("actors", tree.children || [], (c) => [
    c.name, c.actor, c.state, num(c.incarnation), num(c.restarts), num(c.errors),
    num(c.mailbox_depth), c.last_failure ? c.last_failure.type + ": " + c.last_failure.error : null,
  ]);
}

function showPositions(stops) {
  // A follower watches none: it shows the leader's as last stored, without prices.
  $("positions-source").textContent = stops.source === "store"
    ? "Read from the store: watched by the leader " + fmt(stops.leader) + ", no price followed here"
    : "";
  fill("positions", stops.positions || [], (p) => [
    p.symbol, num(p.quantity), num(p.entry_price), num(p.last_price), num(p.peak),
    num(p.stop), p.stop_rule,
    num(p.distance_to_stop_percent === null ? null : fmt(p.distance_to_stop_percent) + " %"),
    p.stale ? p.state + " (price stale)" : p.state,
  ]);
}

function showDecisions(answer) {
  fill("decisions", answer.decisions || [], (d) => [
    when(d.decided_at), d.signal_id, d.symbol, d.side, d.outcome, d.reason, d.detail,
  ]);
}

function showUnknown(answer) {
  fill("unknown-orders", answer.orders || [], (o) => [
    o.client_order_id, o.symbol, o.side, num(o.quantity), o.reason || o.detail || o.state,
  ]);
}

// The audit trail's last entries: who did what, with the token's fingerprint only.
function showAudit(answer) {
  fill("audit", answer.entries || [], (a) => [
    when(a.at), a.client, a.token_fingerprint, a.method + " " + a.path,
    a.body !== null && a.body !== undefined ? a.body : a.body_text, num(a.status),
  ]);
}

function showUniverse(universe) {
  const members = universe.members || {};
  const verdicts = universe.verdicts || {};
  const scores = universe.scores || {};
  const symbols = Array.from(new Set([...Object.keys(members), ...Object.keys(verdicts)])).sort();
  $("universe-summary").textContent = fmt(universe.selected_count) + " selected; last rotation " +
    fmt(when(universe.last_update)) + " (" + fmt(universe.last_reason) + "), next " +
    fmt(when(universe.next_update));
  fill("universe", symbols.map((symbol) => ({ symbol })), (row) => [
    row.symbol, symbol_member(members, row.symbol), num(scores[row.symbol] ?? (members[row.symbol] || {}).score),
    verdicts[row.symbol],
  ]);
  fill("blacklist", universe.blacklist || [], (b) => [
    b.symbol, b.reason, b.source, when(b.added_at), b.expires_at ? when(b.expires_at) : "when removed",
  ]);
}

function symbol_member(members, symbol) {
  return members[symbol] ? "since " + when(members[symbol].since) : "no";
}

// --- chart ---------------------------------------------------------------------------

// The charts are <svg> elements of the page: the HTML parser gave them the SVG
// namespace, and the shapes drawn in them take it from there.
function svg(tag, attrs, text) {
  const node = document.createElementNS($("chart-counts").namespaceURI, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

// One panel: a line per series over the 60 minutes ending now, drawn into ``root``.
function panel(root, title, minutes, series, now) {
  const width = 600, height = 160, left = 40, right = 110, top = 16, bottom = 20;
  const plotW = width - left - right, plotH = height - top - bottom;
  const end = Math.floor(now / 60000);
  const x = (minute) => left + ((minute - (end - 59)) / 59) * plotW;
  let max = 0;
  for (const s of series) for (const m of minutes.values()) max = Math.max(max, s.value(m) || 0);
  max = max > 0 ? max : 1;
  const y = (value) => top + plotH - (value / max) * plotH;
  root.replaceChildren();
  root.setAttribute("viewBox", "0 0 " + width + " " + height);
  root.appendChild(svg("title", {}, title));
  root.appendChild(svg("text", { x: left, y: 11 }, title));
  root.appendChild(svg("line", { x1: left, y1: top + plotH, x2: left + plotW, y2: top + plotH, stroke: "#d9dde3" }));
  root.appendChild(svg("text", { x: 2, y: top + 8 }, fmt(Number(max.toPrecision(3)))));
  root.appendChild(svg("text", { x: 2, y: top + plotH }, "0"));
  root.appendChild(svg("text", { x: left, y: height - 4 }, "-60 min"));
  root.appendChild(svg("text", { x: left + plotW - 20, y: height - 4 }, "now"));
  series.forEach((s, index) => {
    // Quiet minutes are absent from the history: they count zero, and have no latency.
    const points = [];
    for (let minute = end - 59; minute <= end; minute++) {
      const m = minutes.get(minute);
      const value = m ? s.value(m) : (s.sparse ? null : 0);
      if (value === null || value === undefined) continue;
      points.push(x(minute).toFixed(1) + "," + y(value).toFixed(1));
      if (m) root.appendChild(svg("circle", { cx: x(minute), cy: y(value), r: 2.5, fill: s.color }));
    }
    if (points.length > 1) {
      root.appendChild(svg("polyline", { points: points.join(" "), fill: "none", stroke: s.color, "stroke-width": 2 }));
    }
    root.appendChild(svg("rect", { x: width - right + 8, y: top + index * 16, width: 10, height: 10, fill: s.color }));
    root.appendChild(svg("text", { x: width - right + 22, y: top + 9 + index * 16 }, s.name));
  });
}

function showHistory(history) {
  const byMinute = new Map();
  const totals = {};
  for (const m of history.minutes || []) {
    byMinute.set(Math.floor(Date.parse(m.minute) / 60000), m);
    for (const [reason, count] of Object.entries(m.rejections_by_reason || {})) {
      totals[reason] = (totals[reason] || 0) + count;
    }
  }
  const now = Date.parse(history.timestamp) || Date.now();
  const reasons = Object.entries(totals).sort((a, b) => b[1] - a[1]);
  const palette = ["#c0392b", "#8e44ad", "#d35400", "#7f8c8d", "#16a085"];
  const counts = [
    { name: "signals", color: "#2b6cb0", value: (m) => m.signals },
    { name: "orders", color: "#1f8a4c", value: (m) => m.orders },
    ...reasons.slice(0, palette.length).map(([reason], i) => ({
      name: reason, color: palette[i], value: (m) => (m.rejections_by_reason || {})[reason] || 0,
    })),
  ];
  panel($("chart-counts"), "Signals, orders and rejections by reason per minute", byMinute, counts, now);
  panel($("chart-latency"), "Intake to decision latency (ms)", byMinute, [
    { name: "p50", color: "#2b6cb0", sparse: true, value: (m) => m.latency_ms.p50 },
    { name: "p99", color: "#c0392b", sparse: true, value: (m) => m.latency_ms.p99 },
  ], now);
  $("chart-rejections").textContent = reasons.length
    ? "Rejections in the last hour: " + reasons.map(([r, c]) => r + " " + c).join(", ")
    : "No rejection in the last hour.";
}

// --- refresh -------------------------------------------------------------------------

const READS = [
  ["status", showStatus],
  ["health", showHealth, [503]],
  ["stats", showStats],
  ["supervisor", showSupervisor],
  ["trailing-stops", showPositions],
  ["decisions?limit=20", showDecisions],
  ["orders/unknown", showUnknown],
  ["audit?limit=20", showAudit, [503]],
  ["universe", showUniverse],
  ["stats/history", showHistory],
];

// A daemon slow to answer gets one round of reads at a time, not a pile of them; a
// refresh asked for meanwhile (after a command) runs once that round is over.
let refreshing = false;
let again = false;

async function refresh() {
  if (refreshing) {
    again = true;
    return;
  }
  refreshing = true;
  try {
    do {
      again = false;
      await readAll();
    } while (again);
  } finally {
    refreshing = false;
  }
}

async function readAll() {
  const failures = [];
  await Promise.all(READS.map(async ([path, show, accept]) => {
    try {
      show(await get(path, accept));
    } catch (error) {
      failures.push(error.message);
    }
  }));
  $("fetch-error").textContent = failures.join("; ");
  $("updated").textContent = "updated " + new Date().toLocaleTimeString();
}

// --- commands ------------------------------------------------------------------------

async function command(method, path, body) {
  const answer = $("command-answer");
  const token = $("token").value.trim();
  if (!token) {
    answer.textContent = "Type the API token first.";
    return;
  }
  answer.textContent = method + " " + path + " …";
  try {
    const response = await fetch(path, {
      method: method,
      cache: "no-store",
      credentials: "omit",
      headers: { Authorization: "Bearer " + token, "Content-Type": "application/json", Accept: "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    let shown = text;
    try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (_) { /* not JSON: as is */ }
    answer.textContent = method + " " + path + " → " + response.status + "\n" + shown;
  } catch (error) {
    answer.textContent = method + " " + path + " failed: " + error.message;
  }
  refresh();
}

function onSubmit(formId, send) {
  $(formId).addEventListener("submit", (event) => {
    event.preventDefault();
    send();
  });
}

function setup() {
  onSubmit("halt-form", () => command("POST", "trading/halt", {
    reason: $("halt-reason").value, exits: $("halt-exits").value, operator: "dashboard",
  }));
  onSubmit("resume-form", () => command("POST", "trading/resume", { operator: "dashboard" }));
  onSubmit("blacklist-form", () => {
    const ttl = $("blacklist-ttl").value.trim();
    command("POST", "universe/blacklist", {
      symbol: $("blacklist-symbol").value.trim().toUpperCase(),
      reason: $("blacklist-reason").value,
      ttl_s: ttl === "" ? null : Number(ttl),
    });
  });
  onSubmit("unblacklist-form", () => {
    const symbol = $("unblacklist-symbol").value.trim().toUpperCase();
    command("DELETE", "universe/blacklist/" + encodeURIComponent(symbol));
  });
  refresh();
  setInterval(refresh, REFRESH_MS);
}

document.addEventListener("DOMContentLoaded", setup);
