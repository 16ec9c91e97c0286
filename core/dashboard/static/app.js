// The aitrados dashboard page: one WebSocket, a snapshot then coalesced deltas (see server.py).
"use strict";
const LC = window.LightweightCharts;
const $ = (id) => document.getElementById(id);
const model = { charts: {}, fills: [], equity: [], news: [], calendar: [], status: {}, clock: {}, lines: {} };
const MAX_ITEMS = 200;
let current = null, ws = null, dirty = true, markerApi = null;

const priceChart = LC.createChart($("price"), { autoSize: true, layout: { background: { color: "#1b2027" }, textColor: "#d8dde3" },
  grid: { vertLines: { color: "#232a33" }, horzLines: { color: "#232a33" } }, timeScale: { timeVisible: true } });
const candles = priceChart.addSeries(LC.CandlestickSeries, {});
markerApi = LC.createSeriesMarkers(candles, []);
const eqChart = LC.createChart($("equity-chart"), { autoSize: true, layout: { background: { color: "#1b2027" }, textColor: "#d8dde3" },
  grid: { vertLines: { color: "#232a33" }, horzLines: { color: "#232a33" } }, timeScale: { timeVisible: true } });
const eqLine = eqChart.addSeries(LC.LineSeries, { color: "#4da3ff", lineWidth: 2, title: "equity" });
const ddArea = eqChart.addSeries(LC.AreaSeries, { priceScaleId: "dd", lineColor: "#e5534b", topColor: "rgba(229,83,75,0.05)",
  bottomColor: "rgba(229,83,75,0.4)", title: "drawdown %" });
eqChart.priceScale("dd").applyOptions({ scaleMargins: { top: 0.6, bottom: 0 } });
const lineSeries = {};

const sec = (t) => Math.round(t);
function times(key) { return model.charts[key] ? model.charts[key].times : []; }
function barTime(key, t) {  // open time of the candle holding instant t
  const ts = times(key); let lo = 0, hi = ts.length - 1, ans = null;
  while (lo <= hi) { const mid = (lo + hi) >> 1; if (ts[mid] <= t) { ans = ts[mid]; lo = mid + 1; } else hi = mid - 1; }
  return ans;
}
function putCandles(key, list) {
  let c = model.charts[key];
  if (!c) { c = model.charts[key] = { map: new Map(), times: [], count: 0 }; refreshSeriesList(); }
  let appendOnly = true;
  for (const k of list) {
    if (!c.map.has(k.time)) {
      if (c.times.length && k.time < c.times[c.times.length - 1]) { appendOnly = false; c.times.push(k.time); c.times.sort((a, b) => a - b); }
      else c.times.push(k.time);
    }
    c.map.set(k.time, k);
  }
  while (c.times.length > 5000) c.map.delete(c.times.shift());
  if (key === current) {
    if (appendOnly) for (const k of list) candles.update({ ...k, time: sec(k.time) });
    else showSeries(key);
    drawMarkers();
  }
}
function refreshSeriesList() {
  const sel = $("series"), keys = Object.keys(model.charts).sort();
  if (sel.options.length === keys.length) return;
  sel.innerHTML = ""; for (const k of keys) { const o = document.createElement("option"); o.value = o.textContent = k; sel.appendChild(o); }
  if (!current && keys.length) showSeries(keys[0]);
  sel.value = current || "";
}
function showSeries(key) {
  current = key; const c = model.charts[key];
  candles.setData(c ? c.times.map((t) => ({ ...c.map.get(t), time: sec(t) })) : []);
  for (const s of Object.values(lineSeries)) s.setData([]);
  drawMarkers(); dirty = true;
}
function drawMarkers() {
  if (!current) return;
  const sym = current.split(" ")[0], ms = [];
  for (const f of model.fills) {
    if (f.symbol !== sym || f.time == null) continue;
    const t = barTime(current, f.time); if (t == null) continue;
    const buy = f.side === "buy";
    ms.push({ time: sec(t), position: buy ? "belowBar" : "aboveBar", color: buy ? "#35c46a" : "#e5534b",
      shape: buy ? "arrowUp" : "arrowDown", text: `${buy ? "B" : "S"} ${f.quantity}@${f.price.toFixed(2)}` });
  }
  ms.sort((a, b) => a.time - b.time);
  markerApi.setMarkers(ms); $("marker-count").textContent = ms.length;
}
function addEquity(points) {
  for (const p of points) {
    const last = model.equity[model.equity.length - 1];
    if (last && p.time <= last.time) continue;
    model.equity.push(p);
    eqLine.update({ time: sec(p.time), value: p.equity });
    ddArea.update({ time: sec(p.time), value: -100 * p.drawdown });
  }
}
function strategyLines(strategies) {  // indicator lines a strategy declares in state()["indicators"]
  if (!current || !model.clock.time || !strategies) return;
  const t = barTime(current, model.clock.time); if (t == null) return;
  for (const [name, st] of Object.entries(strategies)) {
    const ind = (st && st.indicators) || {};
    for (const [k, v] of Object.entries(ind)) {
      if (typeof v !== "number" || !isFinite(v)) continue;
      const id = `${name}.${k}`;
      if (!lineSeries[id]) lineSeries[id] = priceChart.addSeries(LC.LineSeries, { lineWidth: 1, title: id, priceLineVisible: false });
      try { lineSeries[id].update({ time: sec(t), value: v }); } catch (e) { /* older point after a series switch */ }
    }
  }
}
function apply(msg) {
  if (msg.type === "answer") { $("answer").textContent = msg.ok ? `${msg.op}: done` : `error: ${msg.error}`;
    if (msg.risk) model.status.risk = msg.risk; dirty = true; return; }
  if (msg.type === "snapshot") { for (const k of Object.keys(model.charts)) delete model.charts[k];
    model.fills = []; model.equity = []; current = null; eqLine.setData([]); ddArea.setData([]); }
  model.clock = msg.clock || model.clock;
  for (const [key, ch] of Object.entries(msg.charts || {})) { putCandles(key, ch.candles); model.charts[key].count = ch.count; }
  if (msg.fills) { model.fills.push(...msg.fills); model.fills = model.fills.slice(-MAX_ITEMS); drawMarkers(); }
  for (const k of ["news", "calendar"]) if (msg[k]) model[k] = model[k].concat(msg[k]).slice(-MAX_ITEMS);
  if (msg.equity) addEquity(msg.equity);
  if (msg.status) { model.status = msg.status; strategyLines(msg.status.strategies); }
  dirty = true;
}
function table(id, head, rows) {
  const el = $(id);
  el.innerHTML = "<tr>" + head.map((h) => `<th>${h}</th>`).join("") + "</tr>" +
    rows.map((r) => "<tr>" + r.map((c) => `<td>${esc(c)}</td>`).join("") + "</tr>").join("");
}
function esc(v) { return String(v == null ? "" : (typeof v === "number" ? +v.toFixed(4) : v)).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c])); }
const when = (t) => t == null ? "" : new Date(t * 1000).toISOString().replace("T", " ").slice(0, 16);
function render() {
  if (!dirty) return; dirty = false;
  const s = model.status, c = model.clock;
  $("clock").textContent = c.time ? when(c.time) + (c.ended ? " (ended)" : "") : "-";
  $("step").textContent = c.step || 0;
  if (s.account) $("equity").textContent = (+s.account.equity).toFixed(2);
  const risk = s.risk || {}; const k = $("kill-state");
  k.textContent = risk.kill_switch ? "TRIPPED" : (s.risk ? "armed" : "-"); k.className = "pill" + (risk.kill_switch ? " bad" : "");
  $("candle-count").textContent = current && model.charts[current] ? model.charts[current].times.length : 0;
  table("positions", ["strategy", "symbol", "qty", "avg", "last", "unrealised", "realised"], (s.positions || []).filter((p) => p.quantity)
    .map((p) => [p.strategy, p.full_symbol, p.quantity, p.avg_price, p.last_price, p.unrealised_pnl, p.realised_pnl]));
  table("orders", ["id", "strategy", "symbol", "side", "qty", "type", "limit"], (s.orders || [])
    .map((o) => [o.id, o.strategy, o.full_symbol, o.side, o.quantity, o.order_type, o.limit_price]));
  table("fills", ["time", "strategy", "symbol", "side", "qty", "price"], model.fills.slice(-30).reverse()
    .map((f) => [when(f.time), f.strategy, f.symbol, f.side, f.quantity, f.price]));
  table("risk", ["", ""], Object.entries(risk).map(([a, b]) => [a, typeof b === "object" && b ? JSON.stringify(b) : b]));
  table("strategies", ["strategy", "signal", "reason", "state"], Object.entries(s.strategies || {})
    .map(([n, st]) => [n, st && st.signal, st && st.reason, JSON.stringify(st && st.indicators || {})]));
  const svc = []; for (const [n, i] of Object.entries(s.services || {})) { svc.push([n, i.requests, i.workers.length, ""]);
    for (const w of i.workers) svc.push(["", "", `pid ${w.pid ?? "?"} ${w.host ?? ""}`, `in flight ${w.inflight} served ${w.served}`]); }
  table("services", ["service", "requests", "workers", ""], svc);
  table("topics", ["topic", "messages", "rate/s"], Object.entries(s.topics || {}).sort((a, b) => b[1].rate - a[1].rate)
    .slice(0, 40).map(([t, i]) => [t, i.count, i.rate]));
  const pl = (s.plugins || {}).plugins || [], wk = (s.plugins || {}).workers || [];
  table("plugins", ["plugin", "status", "errors"], pl.map((p) => [p.name, p.status || (p.loaded ? "loaded" : p.error || ""),
    Object.values(p.errors || {}).reduce((a, b) => a + b, 0)]).concat(wk.map((w) => [`worker ${(w.plugins || []).join(",")} pid ${w.pid ?? "-"}`, `${w.status}${w.reason ? ": " + w.reason : ""}`, `restarts ${w.restarts ?? 0}`])));
  table("news", ["time", "symbol", "title"], model.news.slice(-30).reverse().map((n) => [when(n.time), n.symbol, n.title]));
  table("calendar", ["time", "country", "event", "actual", "forecast"], model.calendar.slice(-30).reverse()
    .map((e) => [when(e.time), e.country, e.title, e.actual, e.forecast]));
}
function loop() { render(); requestAnimationFrame(loop); }
function connect() {
  ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  ws.onopen = () => { $("conn").textContent = "live"; $("conn").className = "pill"; };
  ws.onclose = () => { $("conn").textContent = "reconnecting"; $("conn").className = "pill bad"; setTimeout(connect, 1000); };
  ws.onmessage = (ev) => apply(JSON.parse(ev.data));
}
let pending = null;
function ask(op, text) { pending = op; $("confirm-text").textContent = text; $("confirm").showModal(); }
$("trip-btn").onclick = () => ask("trip", "Trip the kill switch? New orders are rejected until reset.");
$("reset-btn").onclick = () => ask("reset", "Reset the kill switch? Orders are accepted again.");
$("confirm").addEventListener("close", () => {
  if ($("confirm").returnValue === "ok" && pending && ws && ws.readyState === 1)
    ws.send(JSON.stringify({ op: pending, reason: $("confirm-reason").value }));
  pending = null;
});
$("series").onchange = (e) => showSeries(e.target.value);
connect(); requestAnimationFrame(loop);
