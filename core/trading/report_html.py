"""The end-of-run report as one self-contained HTML file (no network needed to open it).

:func:`write_html_report` writes ``report.html`` from the same :class:`~aitrados.trading.report.Report`
the other report files come from, plus the price history a :class:`PriceHistory` recorded during
the run: an interactive candlestick chart with the trades' entry and exit markers, equity against
buy-and-hold of the first traded symbol, the drawdown, the metrics table and the trade list. The
vendored lightweight-charts build (Apache-2.0, its notice kept in the page) is inlined.
"""

from __future__ import annotations

import datetime as dt
import html
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any

import msgspec

from ..events import Kind, consumes
from .report import Report

__all__ = ["PriceHistory", "write_html_report", "html_report"]

Candle = tuple[float, float, float, float, float]  # open time (epoch s), open, high, low, close


class PriceHistory:
    """Closed bars seen during a run, per ``"FULL_SYMBOL INTERVAL"``, the last *cap* of each.

    Use ``record`` as a market-data hub consumer (it takes ``("bar", Bar)`` events, ignores others).
    ``series`` holds ``(open time, open, high, low, close)`` with the open time as the bar's datetime
    (turned into epoch seconds by :meth:`as_dict`, once, when the report is written).
    """

    def __init__(self, cap: int = 20000) -> None:
        self.cap = cap
        self.series: dict[str, deque[tuple[dt.datetime, float, float, float, float]]] = {}
        #: full_symbol -> interval -> its series (two lookups a bar, no key tuple built)
        self._by_key: dict[str, dict[str, deque[tuple[dt.datetime, float, float, float, float]]]] = {}

    @consumes(Kind.BAR)
    def record(self, kind: str, obj: Any) -> None:
        """Keep a closed bar (``kind == "bar"``); anything else is ignored."""
        if kind != "bar" or not getattr(obj, "closed", True):
            return
        try:
            d = self._by_key[obj.full_symbol][obj.interval]
        except KeyError:
            d = self.series[f"{obj.full_symbol} {obj.interval}"] = deque(maxlen=self.cap)
            self._by_key.setdefault(obj.full_symbol, {})[obj.interval] = d
        d.append((obj.datetime, obj.open, obj.high, obj.low, obj.close))

    def as_dict(self) -> dict[str, list[Candle]]:
        """A copy of every series, open times in epoch seconds."""
        return {k: [(t.timestamp(), o, h, lo, c) for t, o, h, lo, c in v] for k, v in self.series.items()}


def _ts(v: dt.datetime | None) -> float | None:
    return v.timestamp() if v is not None else None


def _script_json(obj: Any) -> str:
    """JSON safe inside a ``<script>`` element; non-finite floats become ``null`` (msgspec's JSON does that,
    in C: a long run's price series hold hundreds of thousands of numbers)."""
    return msgspec.json.encode(obj).decode("utf-8").replace("</", "<\\/")


#: Candles encoded per call: one C call holds the GIL, which the RPC router in the same process
#: needs; a 390,000-candle run encoded whole held it for ~150 ms (router ping stalls at report time).
_CANDLES_PER_CHUNK = 4096


def _data_chunks(data: dict[str, Any], prices: Mapping[str, Sequence[Candle]]) -> Iterator[str]:
    """``data`` plus ``"prices"`` as one JSON object (safe inside ``<script>``), in pieces of at most
    ``_CANDLES_PER_CHUNK`` candles each, so no single encode, decode or write holds the GIL for long."""
    yield '{"prices":{'
    for i, (name, candles) in enumerate(prices.items()):
        yield ("," if i else "") + _script_json(name) + ":["
        seq = candles if isinstance(candles, list) else list(candles)
        for j in range(0, len(seq), _CANDLES_PER_CHUNK):
            yield ("," if j else "") + _script_json(seq[j:j + _CANDLES_PER_CHUNK])[1:-1]
        yield "]"
    rest = _script_json(data)
    yield "}" + ("," + rest[1:] if rest != "{}" else "}")


def _page_parts(report: Report, prices: Mapping[str, Sequence[Candle]] | None, title: str) -> Iterator[str]:
    """The report page (see the module docstring) in pieces: the page around the data, and the data
    in chunks (:func:`_data_chunks`)."""
    m = msgspec.to_builtins(report.metrics)
    data = {
        "title": title,
        "initial_cash": report.metrics.initial_cash,
        "equity": [[p.datetime.timestamp(), p.equity] for p in report.equity_curve],
        "trades": [{"symbol": t.full_symbol, "direction": t.direction, "quantity": t.quantity,
                    "entry_time": _ts(t.entry_time), "entry_price": t.entry_price, "exit_time": _ts(t.exit_time),
                    "exit_price": t.exit_price, "pnl": t.pnl, "closed": t.closed, "strategy": t.strategy}
                   for t in report.trades],
    }
    rows = "".join(f"<tr><th>{html.escape(k.replace('_', ' '))}</th><td>{html.escape(_fmt(k, v))}</td></tr>"
                   for k, v in m.items())
    lib = files("aitrados.dashboard").joinpath("static", "vendor", "lightweight-charts.standalone.production.js")
    fields = {"title": html.escape(title), "metrics": rows, "lib": lib.read_text(encoding="utf-8"), "app": _APP}
    before, after = _PAGE.split("{data}")
    yield before.format(**fields)
    yield from _data_chunks(data, prices or {})
    yield after.format(**fields)


def html_report(report: Report, prices: Mapping[str, Sequence[Candle]] | None = None, title: str = "Run report") -> str:
    """The report page as a string (see the module docstring)."""
    return "".join(_page_parts(report, prices, title))


def write_html_report(report: Report, path: str | Path, prices: Mapping[str, Sequence[Candle]] | None = None,
                      title: str = "Run report") -> Path:
    """Write :func:`html_report` to *path*, a piece at a time; returns it."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("w", encoding="utf-8") as f:
        for part in _page_parts(report, prices, title):
            f.write(part)
    return p


def _fmt(key: str, v: Any) -> str:
    if v is None:
        return "-"
    if key in ("total_return", "max_drawdown", "win_rate", "exposure") and isinstance(v, float):
        return f"{v * 100:.2f} %"
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1000 else f"{v:,.2f}"
    return str(v)


_APP = r"""
"use strict";
const D = JSON.parse(document.getElementById("report-data").textContent);
const LC = window.LightweightCharts, $ = (id) => document.getElementById(id);
const opts = { autoSize: true, timeScale: { timeVisible: true } };
const keys = Object.keys(D.prices).sort(), sel = $("series");
for (const k of keys) { const o = document.createElement("option"); o.value = o.textContent = k; sel.appendChild(o); }
const pc = LC.createChart($("price"), opts), candles = pc.addSeries(LC.CandlestickSeries, {});
const markers = LC.createSeriesMarkers(candles, []);
function openTime(bars, t) { let lo = 0, hi = bars.length - 1, ans = null;
  while (lo <= hi) { const m = (lo + hi) >> 1; if (bars[m][0] <= t) { ans = bars[m][0]; lo = m + 1; } else hi = m - 1; } return ans; }
function show(key) {
  const bars = D.prices[key] || [], sym = key.split(" ")[0];
  candles.setData(bars.map((b) => ({ time: Math.round(b[0]), open: b[1], high: b[2], low: b[3], close: b[4] })));
  const ms = [];
  for (const t of D.trades) { if (t.symbol !== sym) continue;
    const long = t.direction === "long", e = openTime(bars, t.entry_time);
    if (e != null) ms.push({ time: Math.round(e), position: long ? "belowBar" : "aboveBar", color: long ? "#1a9c4a" : "#d23c33",
      shape: long ? "arrowUp" : "arrowDown", text: (long ? "buy " : "sell ") + t.quantity });
    if (t.exit_time != null) { const x = openTime(bars, t.exit_time);
      if (x != null) ms.push({ time: Math.round(x), position: long ? "aboveBar" : "belowBar", color: "#555",
        shape: long ? "arrowDown" : "arrowUp", text: "exit " + (t.pnl >= 0 ? "+" : "") + t.pnl.toFixed(2) }); } }
  ms.sort((a, b) => a.time - b.time); markers.setMarkers(ms);
  document.body.dataset.markers = ms.length; $("marker-count").textContent = ms.length;
}
sel.onchange = (e) => show(e.target.value); if (keys.length) show(keys[0]);
const ec = LC.createChart($("equity"), opts);
const eq = ec.addSeries(LC.LineSeries, { color: "#2b6cb0", lineWidth: 2, title: "equity" });
eq.setData(D.equity.map((p) => ({ time: Math.round(p[0]), value: p[1] })));
if (keys.length) { const bars = D.prices[keys[0]];
  if (bars.length) { const c0 = bars[0][4];
    ec.addSeries(LC.LineSeries, { color: "#999", lineWidth: 1, title: "buy and hold " + keys[0].split(" ")[0] })
      .setData(bars.map((b) => ({ time: Math.round(b[0]), value: D.initial_cash * b[4] / c0 }))); } }
const dc = LC.createChart($("drawdown"), opts);
let peak = D.initial_cash;
dc.addSeries(LC.AreaSeries, { lineColor: "#d23c33", topColor: "rgba(210,60,51,0.05)", bottomColor: "rgba(210,60,51,0.4)", title: "drawdown %" })
  .setData(D.equity.map((p) => { peak = Math.max(peak, p[1]); return { time: Math.round(p[0]), value: -100 * (1 - p[1] / peak) }; }));
const when = (t) => t == null ? "" : new Date(t * 1000).toISOString().slice(0, 16).replace("T", " ");
const tb = $("trades");
for (const t of D.trades) { const r = tb.insertRow();
  for (const v of [t.strategy, t.symbol, t.direction, t.quantity, when(t.entry_time), t.entry_price?.toFixed(4),
    when(t.exit_time), t.exit_price == null ? "" : t.exit_price.toFixed(4), t.pnl.toFixed(2), t.closed ? "" : "open"])
    r.insertCell().textContent = v; }
"""

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title><link rel="icon" href="data:,">
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font: 13px/1.4 system-ui, sans-serif; margin: 16px; color: #222; }}
.chart {{ height: 380px; }} .chart.small {{ height: 200px; }}
table {{ border-collapse: collapse; }} td, th {{ padding: 2px 8px; border-bottom: 1px solid #ddd; text-align: left; }}
h2 {{ font-size: 15px; margin: 18px 0 6px; }}
</style></head>
<body>
<h1>{title}</h1>
<h2>Price and trades <select id="series"></select> markers <b id="marker-count">0</b></h2>
<div id="price" class="chart"></div>
<h2>Equity and buy-and-hold</h2><div id="equity" class="chart small"></div>
<h2>Drawdown</h2><div id="drawdown" class="chart small"></div>
<h2>Metrics</h2><table id="metrics">{metrics}</table>
<h2>Trades</h2>
<table id="trades"><tr><th>strategy</th><th>symbol</th><th>direction</th><th>qty</th><th>entry</th><th>price</th>
<th>exit</th><th>price</th><th>pnl</th><th></th></tr></table>
<p><small>Charts: TradingView lightweight-charts, Apache License 2.0.</small></p>
<script>{lib}</script>
<script type="application/json" id="report-data">{data}</script>
<script>{app}</script>
</body></html>
"""
