/**
 * The status page: one static document whose script reads /api/tables
 * every few seconds and draws the tables; a table's history is read from
 * /api/history when its row is clicked. Plain HTML, CSS and JS, no build
 * step and nothing loaded from elsewhere. Text from the database is only
 * ever set as textContent.
 */
export const STATUS_PAGE = /* html */ `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>xmin-sync</title>
<style>
  :root { --ok: #1a7f37; --bad: #cf222e; --run: #0969da; --muted: #656d76; --line: #d0d7de; --bg: #f6f8fa; }
  * { box-sizing: border-box; }
  body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1f2328; }
  header { display: flex; gap: 24px; align-items: baseline; padding: 14px 20px; border-bottom: 1px solid var(--line); background: var(--bg); }
  header h1 { font-size: 18px; margin: 0; }
  header .sum { color: var(--muted); }
  header .sum span { color: #1f2328; }
  header .meta { margin-left: auto; color: var(--muted); font-size: 12px; }
  .notice { margin: 10px 20px 0; padding: 8px 12px; border-radius: 6px; background: #fff8c5; border: 1px solid #d4a72c; }
  .notice.bad { background: #ffebe9; border-color: var(--bad); }
  table.fleet { border-collapse: collapse; width: calc(100% - 40px); margin: 14px 20px; }
  table.fleet > thead th { text-align: left; font-weight: 600; color: var(--muted); font-size: 12px; padding: 6px 8px; border-bottom: 1px solid var(--line); white-space: nowrap; }
  table.fleet > tbody > tr.table { cursor: pointer; }
  table.fleet > tbody > tr.table:hover { background: var(--bg); }
  table.fleet > tbody > tr > td { padding: 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
  .name { font-weight: 600; font-family: ui-monospace, SFMono-Regular, Menlo, monospace; }
  .sub { color: var(--muted); font-size: 12px; }
  .num { font-variant-numeric: tabular-nums; white-space: nowrap; }
  .nowrap { white-space: nowrap; }
  .state { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; color: #fff; }
  .state.idle { background: var(--ok); }
  .state.running { background: var(--run); }
  .state.failed { background: var(--bad); }
  .bar { width: 110px; height: 6px; background: var(--line); border-radius: 3px; margin-top: 4px; overflow: hidden; }
  .bar > div { height: 100%; background: var(--run); }
  .error { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12px; white-space: pre-wrap; word-break: break-word; max-width: 420px; max-height: 9em; overflow: auto; margin: 0; }
  .error.current { color: var(--bad); }
  .error.past { color: var(--muted); }
  svg.chart { display: block; }
  .score { font-weight: 600; }
  .score.good { color: var(--ok); }
  .score.bad { color: var(--bad); }
  tr.detail > td { background: var(--bg); }
  table.runs { border-collapse: collapse; width: 100%; font-size: 12px; }
  table.runs th, table.runs td { text-align: left; padding: 3px 6px; border-bottom: 1px solid var(--line); vertical-align: top; }
  table.runs td.error { color: var(--bad); }
</style>
</head>
<body>
<header>
  <h1>xmin-sync</h1>
  <div class="sum" id="summary"></div>
  <div class="meta" id="meta">loading…</div>
</header>
<div id="notices"></div>
<table class="fleet">
  <thead><tr>
    <th>Table</th><th>State</th><th>Schedule</th><th>Last success</th><th>Lag</th>
    <th>Last run</th><th>Recent runs</th><th>Last validation</th><th>Last error</th>
  </tr></thead>
  <tbody id="tables"></tbody>
</table>
<script>
"use strict";
const REFRESH_MS = Number(new URLSearchParams(location.search).get("refresh") || 5) * 1000;
const open = new Set();
let last = null;

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v; else el.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
const svgNS = "http://www.w3.org/2000/svg";
function s(tag, attrs, ...children) {
  const el = document.createElementNS(svgNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  for (const c of children) el.append(c);
  return el;
}
function ago(iso) {
  if (!iso) return "never";
  return duration((Date.now() - Date.parse(iso)) / 1000) + " ago";
}
function duration(sec) {
  sec = Math.max(0, Math.round(sec));
  if (sec < 60) return sec + " s";
  if (sec < 3600) return Math.floor(sec / 60) + " min " + (sec % 60) + " s";
  if (sec < 86400) return Math.floor(sec / 3600) + " h " + Math.floor((sec % 3600) / 60) + " min";
  return Math.floor(sec / 86400) + " d " + Math.floor((sec % 86400) / 3600) + " h";
}
function n(x) { return x === null || x === undefined ? "–" : Number(x).toLocaleString("en-US"); }
function bytes(b) {
  if (b === null || b === undefined) return "";
  const u = ["B", "kB", "MB", "GB", "TB"]; let i = 0;
  while (b >= 1000 && i < u.length - 1) { b /= 1000; i++; }
  return b.toFixed(i ? 1 : 0) + " " + u[i];
}

function chart(recent) {
  const W = 160, H = 36, svg = s("svg", { class: "chart", width: W, height: H, viewBox: "0 0 " + W + " " + H });
  if (recent.length === 0) return h("span", { class: "sub" }, "no runs yet");
  const maxD = Math.max(...recent.map((r) => r.durationMs), 1);
  const maxR = Math.max(...recent.map((r) => r.rowsCopied), 1);
  const step = W / Math.max(12, recent.length), bw = Math.max(2, step - 1.5);
  const pts = [];
  recent.forEach((r, i) => {
    const x = i * step, bh = Math.max(1.5, (r.durationMs / maxD) * (H - 4));
    const bar = s("rect", { x: x.toFixed(1), y: (H - bh).toFixed(1), width: bw.toFixed(1), height: bh.toFixed(1),
      fill: r.status === "ok" ? "#8cc2a0" : "#cf222e" });
    bar.append(s("title", {}, new Date(r.finishedAt).toLocaleString() + ": " + r.status + ", " +
      (r.durationMs / 1000).toFixed(2) + " s, " + n(r.rowsCopied) + " rows"));
    svg.append(bar);
    pts.push((x + bw / 2).toFixed(1) + "," + (H - 2 - (r.rowsCopied / maxR) * (H - 6)).toFixed(1));
  });
  svg.append(s("polyline", { points: pts.join(" "), fill: "none", stroke: "#0969da", "stroke-width": "1.5" }));
  return h("div", {}, svg, h("div", { class: "sub" }, "bars: duration (max " + (maxD / 1000).toFixed(1) + " s) · line: rows (max " + n(maxR) + ")"));
}

function stateCell(t) {
  const badge = h("span", { class: "state " + t.state, "data-state": t.state }, t.state);
  if (t.state !== "running" || !t.running) return [badge];
  const r = t.running, parts = [badge, h("div", { class: "sub" }, "since " + ago(r.since).replace(" ago", ""))];
  if (r.estimatedBytes) {
    const pct = Math.min(100, Math.round((r.bytes / r.estimatedBytes) * 100));
    parts.push(h("div", { class: "bar", title: bytes(r.bytes) + " of about " + bytes(r.estimatedBytes) }, h("div", { style: "width:" + pct + "%" })));
    parts.push(h("div", { class: "sub" }, pct + "% · " + bytes(r.bytes)));
  } else if (r.bytes) parts.push(h("div", { class: "sub" }, bytes(r.bytes) + " copied"));
  if (r.host) parts.push(h("div", { class: "sub" }, r.host + ":" + r.pid));
  return parts;
}

function lagCell(t, view) {
  const tx = t.lag.transactions;
  const txText = tx !== null ? n(tx) + " tx" : "– tx";
  const title = tx !== null ? "transactions between the source's horizon and the watermark"
    : view.source.configured ? "no watermark (timestamp or full mode) or the source is unreachable"
    : "lag in transactions needs the source: start serve with --source or --config";
  return [h("div", { class: "num lag-tx", title }, txText),
          h("div", { class: "num lag-s", title: "since the snapshot of the last successful run" },
            t.lag.seconds !== null ? duration(t.lag.seconds) : "– s")];
}

function lastRunCell(t) {
  const r = t.lastRun;
  if (!r) return h("span", { class: "sub" }, "–");
  if (r.status !== "ok")
    return [h("div", { class: "score bad" }, "failed"), h("div", { class: "sub" }, "after " + (r.durationMs / 1000).toFixed(1) + " s · " + r.process)];
  return [h("div", { class: "num" }, n(r.rowsCopied) + " rows"),
    h("div", { class: "sub num" }, "+" + n(r.inserted) + " ~" + n(r.updated) + " −" + n(r.deleted) + " · " + (r.durationMs / 1000).toFixed(1) + " s"),
    h("div", { class: "sub" }, (r.mode || "") + (r.reason ? " (" + r.reason + ")" : ""))];
}

function validationCell(t) {
  const v = t.validation;
  if (!v) return h("span", { class: "sub" }, "never validated");
  if (v.status !== "ok") return [h("div", { class: "score bad" }, "failed"), h("div", { class: "sub" }, ago(v.at))];
  return [h("div", { class: "score " + (v.isSynchronized ? "good" : "bad") }, "integrity " + v.integrityScore),
    h("div", { class: "sub" }, (v.isSynchronized ? "synchronized" : "differs") + " · " + (v.mode || "") + " · " + ago(v.at))];
}

function errorCell(t) {
  if (!t.lastError) return h("span", { class: "sub" }, "–");
  const current = t.state === "failed";
  return [h("pre", { class: "error " + (current ? "current" : "past") }, t.lastError.error),
    h("div", { class: "sub" }, (current ? "" : "resolved · ") + ago(t.lastError.at))];
}

function row(t, view) {
  const tr = h("tr", { class: "table", "data-table": t.table },
    h("td", {}, h("div", { class: "name" }, t.table), t.source && t.source !== t.table ? h("div", { class: "sub" }, "from " + t.source) : null),
    h("td", {}, stateCell(t)),
    h("td", { class: "sub nowrap" }, t.schedule || "–"),
    h("td", {}, h("div", { class: "num" }, ago(t.lastSuccessAt)), t.lastSuccessAt ? h("div", { class: "sub" }, new Date(t.lastSuccessAt).toLocaleString()) : null),
    h("td", {}, lagCell(t, view)),
    h("td", {}, lastRunCell(t)),
    h("td", {}, chart(t.recent)),
    h("td", {}, validationCell(t)),
    h("td", {}, errorCell(t)));
  tr.addEventListener("click", () => { open.has(t.table) ? open.delete(t.table) : open.add(t.table); draw(); });
  return tr;
}

const histories = new Map();
async function loadHistory(table) {
  const res = await fetch("/api/history?limit=50&table=" + encodeURIComponent(table));
  histories.set(table, await res.json());
  draw();
}
function detail(t) {
  const runs = histories.get(t.table);
  if (!runs) { loadHistory(t.table); return h("tr", { class: "detail" }, h("td", { colspan: 9 }, "loading history…")); }
  const body = runs.map((r) => h("tr", {},
    h("td", { class: "num" }, new Date(r.finishedAt).toLocaleString()),
    h("td", {}, r.kind + (r.mode ? " " + r.mode : "")),
    h("td", {}, r.status),
    h("td", { class: "num" }, r.kind === "validate" ? "integrity " + (r.integrityScore ?? "–")
      : n(r.rowsCopied) + " / +" + n(r.inserted) + " ~" + n(r.updated) + " −" + n(r.deleted)),
    h("td", { class: "num" }, (r.watermarkBefore || "–") + " → " + (r.watermarkAfter || "–")),
    h("td", { class: "num" }, (r.durationMs / 1000).toFixed(2) + " s"),
    h("td", { class: "sub" }, r.process + " " + r.host + ":" + r.pid),
    h("td", { class: "error" }, r.error || "")));
  return h("tr", { class: "detail" }, h("td", { colspan: 9 },
    h("table", { class: "runs" }, h("thead", {}, h("tr", {}, ["finished", "run", "status", "rows copied / ins upd del", "watermark", "duration", "by", "error"].map((c) => h("th", {}, c)))),
      h("tbody", {}, body))));
}

function draw() {
  const view = last;
  if (!view) return;
  const tbody = document.getElementById("tables");
  tbody.replaceChildren(...view.tables.flatMap((t) => open.has(t.table) ? [row(t, view), detail(t)] : [row(t, view)]));
  const count = (st) => view.tables.filter((t) => t.state === st).length;
  document.getElementById("summary").replaceChildren(
    h("span", {}, view.tables.length + " tables"), " · ", h("span", {}, count("running") + " running"), " · ",
    h("span", { style: count("failed") ? "color: var(--bad); font-weight: 600" : "" }, count("failed") + " failed"));
  document.getElementById("meta").textContent = "updated " + new Date(view.generatedAt).toLocaleTimeString() + " · every " + REFRESH_MS / 1000 + " s";
  const notices = [];
  if (!view.target.ok) notices.push(h("div", { class: "notice bad" }, "target unreachable: " + view.target.error));
  if (view.source.configured && !view.source.ok) notices.push(h("div", { class: "notice bad" }, "source unreachable: " + (view.source.error || "")));
  if (!view.source.configured) notices.push(h("div", { class: "notice" }, "No source connection: lag in transactions is not shown (start serve with --source URL or --config)."));
  document.getElementById("notices").replaceChildren(...notices);
}

async function refresh() {
  try {
    const res = await fetch("/api/tables");
    last = await res.json();
    for (const t of open) histories.delete(t);
    draw();
  } catch (err) {
    document.getElementById("meta").textContent = "cannot reach the server: " + err.message;
  }
}
refresh();
setInterval(refresh, REFRESH_MS);
</script>
</body>
</html>
`;
