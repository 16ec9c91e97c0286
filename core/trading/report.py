"""Run reports: the trade list, the picture, the terminal summary, the files and one folder per run.

:func:`build_report` turns a broker's run into a :class:`Report` (metrics from
:mod:`aitrados.trading.metrics`, whose docstring defines them). Only
:func:`write_trades_csv`, :func:`plot_report` and :meth:`Report.write` touch files;
:func:`run_folder` makes a new folder per run and points ``latest`` at it.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec

from .broker import EquityPoint, PaperBroker
from .metrics import Metrics, PriceLines, Trade, buy_and_hold, compute_metrics, periods_per_year, trades_from_fills

__all__ = [
    "Trade",
    "Metrics",
    "Report",
    "periods_per_year",
    "trades_from_fills",
    "buy_and_hold",
    "compute_metrics",
    "write_trades_csv",
    "plot_equity",
    "plot_report",
    "summary_table",
    "build_report",
    "run_folder",
    "run_params",
]


_TRADE_FIELDS = ("full_symbol", "strategy", "direction", "quantity", "entry_time", "entry_price",
                 "exit_time", "exit_price", "pnl", "commission", "closed", "tag", "return_pct", "duration")


def _fmt_duration(td: dt.timedelta) -> str:
    """``'17 days 03:00:00'`` (pandas reads it with ``pd.to_timedelta``)."""
    secs = int(td.total_seconds())
    days, rest = divmod(secs, 86400)
    return f"{days} days {rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"


def write_trades_csv(trades: Iterable[Trade], path: str | Path) -> Path:
    """Write the trade list as CSV (ISO timestamps, ``return_pct`` in percent, durations as
    ``'<d> days hh:mm:ss'``); returns the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(_TRADE_FIELDS)
        for t in trades:
            row = []
            for name in _TRADE_FIELDS:
                v = getattr(t, name)
                if name == "return_pct" and v is not None:
                    v = v * 100  # percent
                if isinstance(v, dt.datetime):
                    v = v.isoformat()
                elif isinstance(v, dt.timedelta):
                    v = _fmt_duration(v)
                row.append("" if v is None else v)
            w.writerow(row)
    return p


def plot_equity(curve: Sequence[EquityPoint], path: str | Path, title: str = "Equity") -> Path:
    """Draw the equity curve and drawdown alone (no prices or trades) as a PNG; returns the path."""
    return plot_report(curve, [], {}, path, title)


def plot_report(curve: Sequence[EquityPoint], trades: Sequence[Trade], prices: PriceLines, path: str | Path,
                title: str = "Equity", initial_cash: float | None = None) -> Path:
    """Draw the run as a PNG with matplotlib's Agg backend; returns the path.

    Panels: equity with a buy-and-hold line (the initial cash in the traded symbols, equal
    parts, from their first close); the price of each traded symbol (up to three) with trade
    markers (entries: ▲ long, ▼ short; exits: ×); drawdown.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    if not curve:
        raise ValueError("plot_report: the equity curve is empty; run some bars through the broker first")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    xs = [pt.datetime for pt in curve]
    ys = [pt.equity for pt in curve]
    cash0 = initial_cash if initial_cash is not None else ys[0]
    traded = [sym for sym in sorted({t.full_symbol for t in trades}) if prices.get(sym)][:3]
    peak = -math.inf
    dd = []
    for y in ys:
        peak = max(peak, y)
        dd.append(-(1 - y / peak) * 100 if peak > 0 else 0.0)
    height = 4 + 2.5 * len(traded)  # inches
    fig = Figure(figsize=(11, height), dpi=100)
    ratios = [3] + [2] * len(traded) + [1]
    axes = fig.subplots(len(ratios), 1, sharex=True, gridspec_kw={"height_ratios": ratios})
    ax_eq, ax_dd = axes[0], axes[-1]
    ax_eq.plot(xs, ys, color="tab:blue", linewidth=1.2, label="equity")
    if traded:
        share = cash0 / len(traded)
        bh_x = [d for d, _ in prices[traded[0]]]
        bh_y = [share * sum(_value_at(prices[s], d) / prices[s][0][1] for s in traded) for d in bh_x]
        ax_eq.plot(bh_x, bh_y, color="tab:gray", linewidth=1.0, linestyle="--", label="buy and hold")
    ax_eq.set_title(title)
    ax_eq.set_ylabel("equity")
    ax_eq.legend(loc="upper left")
    ax_eq.grid(True, alpha=0.3)
    for ax, sym in zip(axes[1:-1], traded):
        line = prices[sym]
        ax.plot([d for d, _ in line], [c for _, c in line], color="black", linewidth=0.8, label=sym)
        mine = [t for t in trades if t.full_symbol == sym]
        for direction, marker, color in (("long", "^", "tab:green"), ("short", "v", "tab:red")):
            pts = [(t.entry_time, t.entry_price) for t in mine if t.direction == direction]
            if pts:
                ax.scatter(*zip(*pts), marker=marker, color=color, s=28, zorder=3, label=f"{direction} entry")
        exits = [(t.exit_time, t.exit_price) for t in mine if t.exit_time is not None and t.exit_price is not None]
        if exits:
            ax.scatter(*zip(*exits), marker="x", color="tab:purple", s=22, zorder=3, label="exit")
        ax.set_ylabel("price")
        ax.legend(loc="upper left", fontsize="small")
        ax.grid(True, alpha=0.3)
    ax_dd.fill_between(xs, dd, 0, color="tab:red", alpha=0.4)
    ax_dd.set_ylabel("drawdown %")
    ax_dd.grid(True, alpha=0.3)
    # Fixed margins in inches (room for the tick labels, the axis labels and the slanted dates)
    # instead of tight_layout, which draws the whole figure once more to measure them: a third
    # of the picture's time. Compression level 3 writes as small a file as the default 6, twice as fast.
    fig.subplots_adjust(left=1.0 / 11, right=1 - 0.25 / 11, top=1 - 0.45 / height, bottom=0.8 / height, hspace=0.1)
    fig.autofmt_xdate(bottom=0.8 / height)
    fig.savefig(p, format="png", pil_kwargs={"compress_level": 3})
    return p


def _value_at(line: Sequence[tuple[dt.datetime, float]], when: dt.datetime) -> float:
    """The last close at or before ``when`` (the first close before the line starts)."""
    lo, hi = 0, len(line)
    while lo < hi:
        mid = (lo + hi) // 2
        if line[mid][0] <= when:
            lo = mid + 1
        else:
            hi = mid
    return line[max(lo - 1, 0)][1]


def _fmt_pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:.2f} %"


def _fmt_num(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _fmt_td(x: dt.timedelta | None) -> str:
    return "n/a" if x is None else _fmt_duration(x)


def summary_table(metrics: Metrics, title: str = "Run summary") -> str:
    """A plain-text table of the metrics for the terminal."""
    m = metrics
    rows = [
        ("start", m.start.isoformat() if m.start else "n/a"),
        ("end", m.end.isoformat() if m.end else "n/a"),
        ("initial cash", f"{m.initial_cash:,.2f}"),
        ("final equity", f"{m.final_equity:,.2f}"),
        ("equity peak", "n/a" if m.equity_peak is None else f"{m.equity_peak:,.2f}"),
        ("total return", _fmt_pct(m.total_return)),
        ("buy and hold return", _fmt_pct(m.buy_and_hold_return)),
        ("CAGR", _fmt_pct(m.cagr)),
        ("annual return", _fmt_pct(m.return_ann)),
        ("annual volatility", _fmt_pct(m.volatility_ann)),
        ("sharpe (annualised)", "n/a" if m.sharpe is None else f"{m.sharpe:.3f}  (x sqrt({m.periods_per_year:g}))"),
        ("sortino", _fmt_num(m.sortino)),
        ("calmar", _fmt_num(m.calmar)),
        ("max drawdown", _fmt_pct(m.max_drawdown)),
        ("max drawdown duration", _fmt_td(m.max_drawdown_duration)),
        ("trades (closed)", str(m.trades)),
        ("win rate", _fmt_pct(m.win_rate)),
        ("best trade", _fmt_pct(m.best_trade)),
        ("worst trade", _fmt_pct(m.worst_trade)),
        ("avg trade (geometric)", _fmt_pct(m.avg_trade)),
        ("expectancy", _fmt_pct(m.expectancy)),
        ("profit factor", _fmt_num(m.profit_factor)),
        ("SQN", _fmt_num(m.sqn)),
        ("kelly", _fmt_num(m.kelly)),
        ("avg trade duration", _fmt_td(m.avg_trade_duration)),
        ("max trade duration", _fmt_td(m.max_trade_duration)),
        ("exposure", _fmt_pct(m.exposure)),
        ("commission", f"{m.commission:,.2f}"),
        ("rejected orders", str(m.rejected)),
        ("margin calls", str(m.margin_calls)),
        ("equity points", str(m.points)),
    ]
    w1 = max(len(r[0]) for r in rows)
    w2 = max(len(r[1]) for r in rows)
    line = "+" + "-" * (w1 + 2) + "+" + "-" * (w2 + 2) + "+"
    out = [title, line]
    out += [f"| {k:<{w1}} | {v:>{w2}} |" for k, v in rows]
    out.append(line)
    return "\n".join(out)


class Report(msgspec.Struct):
    """Everything a run produced: metrics, trades, the equity curve, prices and the run's parameters.

    ``params`` (settings, strategies, data span, version; see :func:`run_params`) goes into
    ``metrics.json`` under ``run``.
    """

    metrics: Metrics
    trades: list[Trade]
    equity_curve: list[EquityPoint]
    prices: dict[str, list[tuple[dt.datetime, float]]] = {}
    params: dict[str, Any] = {}
    #: Strategy callback errors of the run: ``"strategy.method: ExceptionType"`` -> count.
    errors: dict[str, int] = msgspec.field(default_factory=dict)
    #: True when the run was interrupted before the end of its data.
    partial: bool = False

    def summary(self, title: str = "Run summary") -> str:
        """The terminal table, then the partial-run mark and the strategy errors (if any)."""
        lines = [summary_table(self.metrics, title)]
        if self.partial:
            lines.append("PARTIAL: the run was interrupted before the end of its data")
        if self.errors:
            lines.append(f"strategy errors: {sum(self.errors.values())}")
            lines += [f"  {n:>7} x {k}" for k, n in sorted(self.errors.items())]
        return "\n".join(lines)

    def write(self, folder: str | Path, title: str = "Equity") -> dict[str, Path]:
        """Write ``trades.csv``, ``equity.png``, ``equity.csv``, ``metrics.json`` and ``summary.txt`` into
        ``folder``; returns the paths (and ``folder``).

        ``metrics.json`` holds the metrics at its top level and the run's parameters, data span and
        version under ``run``; it is the same run after run for the same inputs.
        """
        d = Path(folder)
        d.mkdir(parents=True, exist_ok=True)
        paths = {
            "folder": d,
            "trades": write_trades_csv(self.trades, d / "trades.csv"),
            "equity_png": (plot_report(self.equity_curve, self.trades, self.prices, d / "equity.png", title,
                                       self.metrics.initial_cash)
                           if self.equity_curve else d / "equity.png"),
        }
        eq = d / "equity.csv"
        with eq.open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["datetime", "equity", "cash", "gross_exposure"])
            for pt in self.equity_curve:
                w.writerow([pt.datetime.isoformat(), repr(pt.equity), repr(pt.cash), repr(pt.gross_exposure)])
        paths["equity_csv"] = eq
        mj = d / "metrics.json"
        doc = msgspec.to_builtins(self.metrics)
        for key in ("max_drawdown_duration", "avg_trade_duration", "max_trade_duration"):
            td = getattr(self.metrics, key)
            doc[key + "_days"] = None if td is None else td.total_seconds() / 86400
        doc["run"] = msgspec.to_builtins(self.params)
        doc["partial"] = self.partial
        doc["strategy_errors"] = dict(sorted(self.errors.items()))
        mj.write_text(json.dumps(doc, indent=2), encoding="utf-8")
        paths["metrics"] = mj
        st = d / "summary.txt"
        st.write_text(self.summary() + "\n", encoding="utf-8")
        paths["summary"] = st
        return paths


def run_folder(base: str | Path, now: dt.datetime | None = None) -> Path:
    """Create a new folder for one run under ``base`` (``run-<UTC time>``, ``-2``, ``-3``... when taken) and
    point ``base/latest`` at it (a relative symlink; a ``latest.txt`` naming it where links are not allowed).

    Returns the new folder. The wall clock only names the folder; nothing in it depends on it.
    """
    root = Path(base)
    root.mkdir(parents=True, exist_ok=True)
    stamp = (now or dt.datetime.now(dt.timezone.utc)).strftime("run-%Y%m%dT%H%M%SZ")
    folder, n = root / stamp, 1
    while True:
        try:
            folder.mkdir()
            break
        except FileExistsError:
            n += 1
            folder = root / f"{stamp}-{n}"
    link = root / "latest"
    try:
        tmp = root / f".latest-{folder.name}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(folder.name, target_is_directory=True)
        tmp.replace(link)  # atomic: readers see the old or the new run, never none
    except OSError:
        (root / "latest.txt").write_text(folder.name + "\n", encoding="utf-8")
    return folder


def run_params(engine: Any, interval: str | None = None) -> dict[str, Any]:
    """The parameters of ``engine``'s run for ``metrics.json``: version, broker and risk settings,
    strategies (class, symbols, intervals, size), the data span (first/last bar close per symbol, bars) and
    the reporting interval."""
    from .. import __version__

    broker = engine.broker
    strategies = []
    for s in engine.strategies:
        item: dict[str, Any] = {"name": s.strategy_name, "class": f"{type(s).__module__}.{type(s).__qualname__}",
                                "symbols": list(s.symbols), "intervals": list(s.intervals)}
        for attr in ("size", "entry", "allow_short", "stop_loss_pct", "take_profit_pct"):
            value = getattr(s, attr, None)
            # only plain values: a user strategy's own `entry` may be anything (an indicator,
            # a channel), and metrics.json must still be written
            if isinstance(value, (bool, int, float, str)):
                item[attr] = value
        for attr in ("fast", "slow"):
            period = getattr(getattr(s, attr, None), "period", None)
            if period is not None:
                item[attr] = period
        strategies.append(item)
    data = {sym: {"first": line[0][0].isoformat(), "last": line[-1][0].isoformat(), "bars": len(line)}
            for sym, line in sorted(broker.closes.items()) if line}
    return {
        "version": __version__,
        "interval": interval,
        "broker": broker.settings.model_dump(mode="json"),
        "risk": engine.risk.limits.model_dump(mode="json"),
        "strategies": strategies,
        "data": data,
        "bars_seen": getattr(engine, "bars_seen", None),
    }


def build_report(broker: PaperBroker, interval: str = "DAY", periods: float | None = None,
                 params: Mapping[str, Any] | None = None) -> Report:
    """The report of a broker's run so far (usable mid-run, e.g. from an RPC call); ``params`` see :class:`Report`."""
    curve = list(broker.equity_curve)
    last = {p.full_symbol: p.last_price for p in broker.positions() if p.last_price is not None}
    trades = trades_from_fills(broker.fills(), last)
    ppy = periods if periods is not None else periods_per_year(interval)
    prices = {sym: list(line) for sym, line in broker.closes.items()}
    metrics = compute_metrics(curve, float(broker.settings.initial_cash), trades, ppy, broker.commission_paid, prices)
    metrics = msgspec.structs.replace(metrics, rejected=len(broker.orders("rejected")), margin_calls=len(broker.margin_calls))
    return Report(metrics=metrics, trades=trades, equity_curve=curve, prices=prices, params=dict(params or {}))
