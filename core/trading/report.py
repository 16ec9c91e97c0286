"""Run reports: metrics, the trade list, the equity-curve picture and a terminal summary.

Definitions (also in docs/trading.md):

* **total return** = final equity / initial cash - 1.
* **max drawdown** = the largest fall from a running peak, ``max(1 - equity / peak)``, with
  the initial cash as the first peak; a positive fraction (0.25 = 25 %).
* **Sharpe** = ``mean(r) / std(r, ddof=1) * sqrt(periods_per_year)`` over the simple returns
  ``r`` of the equity curve, point to point (the first from the initial cash), risk-free rate
  0. ``periods_per_year`` comes from the bar interval: DAY 252, WEEK 52, MON 12, N minutes
  ``252 * 390 / N`` (a 6.5-hour US session); pass it explicitly for other markets. None when
  there are fewer than two returns or they do not vary.
* **trades**: round trips per symbol, from flat to flat (a flip closes one and opens the
  next); ``pnl`` is price PnL minus all commissions of its fills. ``number of trades`` and
  ``win rate`` (share of trades with pnl > 0) count closed trades only; a trade still open at
  the end is listed with ``closed = False`` and marked to the last price.
* **exposure** = share of equity-curve points with a non-zero position.

Only :func:`write_trades_csv`, :func:`plot_equity` and :meth:`Report.write` touch files.
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
from .orders import Fill

__all__ = [
    "Trade",
    "Metrics",
    "Report",
    "periods_per_year",
    "trades_from_fills",
    "compute_metrics",
    "write_trades_csv",
    "plot_equity",
    "summary_table",
    "build_report",
]

_EPS = 1e-9


class Trade(msgspec.Struct):
    """One round trip in one symbol (see the module docstring)."""

    full_symbol: str
    direction: str
    quantity: float
    entry_time: dt.datetime
    entry_price: float
    exit_time: dt.datetime | None = None
    exit_price: float | None = None
    pnl: float = 0.0
    commission: float = 0.0
    closed: bool = False
    strategy: str = ""


class Metrics(msgspec.Struct, frozen=True):
    """The headline numbers of a run."""

    initial_cash: float
    final_equity: float
    total_return: float
    max_drawdown: float
    sharpe: float | None
    periods_per_year: float
    trades: int
    win_rate: float | None
    exposure: float
    commission: float
    points: int
    rejected: int = 0
    margin_calls: int = 0


def periods_per_year(interval: str) -> float:
    """Bars per year for annualising: DAY 252, WEEK 52, MON 12, ``<N>M`` 252 * 390 / N."""
    iv = interval.strip().upper()
    fixed = {"DAY": 252.0, "WEEK": 52.0, "MON": 12.0}
    if iv in fixed:
        return fixed[iv]
    if iv.endswith("M") and iv[:-1].isdigit() and int(iv[:-1]) > 0:
        return 252.0 * 390.0 / int(iv[:-1])
    raise ValueError(f"unknown interval {interval!r} for annualising; use 1M..240M, DAY, WEEK or MON, or pass periods_per_year")


def trades_from_fills(fills: Iterable[Fill], last_prices: Mapping[str, float] | None = None) -> list[Trade]:
    """Group fills into round trips per symbol; open trades are marked to ``last_prices``."""
    last_prices = last_prices or {}
    out: list[Trade] = []
    state: dict[str, dict[str, Any]] = {}
    for f in fills:
        st = state.setdefault(f.full_symbol, {"pos": 0.0, "avg": 0.0, "trade": None})
        signed = f.signed_quantity
        remaining = signed
        pos = st["pos"]
        if pos != 0 and (pos > 0) != (signed > 0):
            closing = min(abs(signed), abs(pos))
            share = closing / abs(signed)
            tr: Trade = st["trade"]
            realised = closing * (f.price - st["avg"]) * (1.0 if pos > 0 else -1.0)
            tr.pnl += realised - f.commission * share
            tr.commission += f.commission * share
            st.setdefault("exit_qty", 0.0)
            st.setdefault("exit_val", 0.0)
            st["exit_qty"] += closing
            st["exit_val"] += closing * f.price
            tr.exit_price = st["exit_val"] / st["exit_qty"]
            tr.exit_time = f.datetime
            pos = pos + math.copysign(closing, signed)
            if abs(pos) <= _EPS:
                pos = 0.0
                tr.closed = True
                st["avg"] = 0.0
                st["exit_qty"] = st["exit_val"] = 0.0
                st["trade"] = None
            remaining = signed - math.copysign(closing, signed)
            commission_left = f.commission * (1 - share)
        else:
            commission_left = f.commission
        if abs(remaining) > _EPS:
            tr = st["trade"]
            if tr is None:
                tr = Trade(
                    full_symbol=f.full_symbol,
                    direction="long" if remaining > 0 else "short",
                    quantity=0.0,
                    entry_time=f.datetime,
                    entry_price=f.price,
                    strategy=f.strategy,
                )
                st["trade"] = tr
                st["entry_qty"] = 0.0
                st["entry_val"] = 0.0
                out.append(tr)
            new_pos = pos + remaining
            st["avg"] = (pos * st["avg"] + remaining * f.price) / new_pos
            pos = new_pos
            st["entry_qty"] += abs(remaining)
            st["entry_val"] += abs(remaining) * f.price
            tr.entry_price = st["entry_val"] / st["entry_qty"]
            tr.quantity = max(tr.quantity, abs(pos))
            tr.pnl -= commission_left
            tr.commission += commission_left
        st["pos"] = pos
    for sym, st in state.items():
        tr = st["trade"]
        if tr is not None and not tr.closed and sym in last_prices:
            tr.pnl += (last_prices[sym] - st["avg"]) * st["pos"]
    return out


def compute_metrics(
    curve: Sequence[EquityPoint],
    initial_cash: float,
    trades: Sequence[Trade],
    periods: float = 252.0,
    commission: float = 0.0,
) -> Metrics:
    """Metrics of an equity curve and its trades (definitions in the module docstring)."""
    equities = [p.equity for p in curve]
    final = equities[-1] if equities else initial_cash
    peak = initial_cash
    mdd = 0.0
    for e in equities:
        peak = max(peak, e)
        if peak > 0:
            mdd = max(mdd, 1.0 - e / peak)
    prev = initial_cash
    rets: list[float] = []
    for e in equities:
        rets.append(e / prev - 1.0 if prev else 0.0)
        prev = e
    sharpe: float | None = None
    if len(rets) >= 2:
        mean = math.fsum(rets) / len(rets)
        var = math.fsum((r - mean) ** 2 for r in rets) / (len(rets) - 1)
        if var > 0:
            sharpe = mean / math.sqrt(var) * math.sqrt(periods)
    closed = [t for t in trades if t.closed]
    wins = sum(1 for t in closed if t.pnl > 0)
    exposure = sum(1 for p in curve if p.gross_exposure > 0) / len(curve) if curve else 0.0
    return Metrics(
        initial_cash=initial_cash,
        final_equity=final,
        total_return=final / initial_cash - 1.0,
        max_drawdown=mdd,
        sharpe=sharpe,
        periods_per_year=periods,
        trades=len(closed),
        win_rate=wins / len(closed) if closed else None,
        exposure=exposure,
        commission=commission,
        points=len(curve),
    )


_TRADE_FIELDS = ("full_symbol", "strategy", "direction", "quantity", "entry_time", "entry_price",
                 "exit_time", "exit_price", "pnl", "commission", "closed")


def write_trades_csv(trades: Iterable[Trade], path: str | Path) -> Path:
    """Write the trade list as CSV (ISO timestamps); returns the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(_TRADE_FIELDS)
        for t in trades:
            row = []
            for name in _TRADE_FIELDS:
                v = getattr(t, name)
                row.append(v.isoformat() if isinstance(v, dt.datetime) else ("" if v is None else v))
            w.writerow(row)
    return p


def plot_equity(curve: Sequence[EquityPoint], path: str | Path, title: str = "Equity") -> Path:
    """Draw the equity curve (and drawdown below it) as a PNG with matplotlib's Agg backend; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    if not curve:
        raise ValueError("plot_equity: the equity curve is empty; run some bars through the broker first")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    xs = [pt.datetime for pt in curve]
    ys = [pt.equity for pt in curve]
    peak = -math.inf
    dd = []
    for y in ys:
        peak = max(peak, y)
        dd.append(-(1 - y / peak) * 100 if peak > 0 else 0.0)
    fig = Figure(figsize=(10, 6), dpi=100)
    ax1, ax2 = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax1.plot(xs, ys, color="tab:blue", linewidth=1.2)
    ax1.set_title(title)
    ax1.set_ylabel("equity")
    ax1.grid(True, alpha=0.3)
    ax2.fill_between(xs, dd, 0, color="tab:red", alpha=0.4)
    ax2.set_ylabel("drawdown %")
    ax2.grid(True, alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(p, format="png")
    return p


def _fmt_pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:.2f} %"


def summary_table(metrics: Metrics, title: str = "Run summary") -> str:
    """A plain-text table of the metrics for the terminal."""
    rows = [
        ("initial cash", f"{metrics.initial_cash:,.2f}"),
        ("final equity", f"{metrics.final_equity:,.2f}"),
        ("total return", _fmt_pct(metrics.total_return)),
        ("max drawdown", _fmt_pct(metrics.max_drawdown)),
        ("sharpe (annualised)", "n/a" if metrics.sharpe is None else f"{metrics.sharpe:.3f}  (x sqrt({metrics.periods_per_year:g}))"),
        ("trades (closed)", str(metrics.trades)),
        ("win rate", _fmt_pct(metrics.win_rate)),
        ("exposure", _fmt_pct(metrics.exposure)),
        ("commission", f"{metrics.commission:,.2f}"),
        ("equity points", str(metrics.points)),
    ]
    w1 = max(len(r[0]) for r in rows)
    w2 = max(len(r[1]) for r in rows)
    line = "+" + "-" * (w1 + 2) + "+" + "-" * (w2 + 2) + "+"
    out = [title, line]
    out += [f"| {k:<{w1}} | {v:>{w2}} |" for k, v in rows]
    out.append(line)
    return "\n".join(out)


class Report(msgspec.Struct):
    """Everything a run produced: metrics, trades and the equity curve."""

    metrics: Metrics
    trades: list[Trade]
    equity_curve: list[EquityPoint]

    def summary(self, title: str = "Run summary") -> str:
        """The terminal table."""
        return summary_table(self.metrics, title)

    def write(self, folder: str | Path, title: str = "Equity") -> dict[str, Path]:
        """Write ``trades.csv``, ``equity.png``, ``equity.csv``, ``metrics.json`` and ``summary.txt``; returns the paths."""
        d = Path(folder)
        d.mkdir(parents=True, exist_ok=True)
        paths = {
            "trades": write_trades_csv(self.trades, d / "trades.csv"),
            "equity_png": plot_equity(self.equity_curve, d / "equity.png", title) if self.equity_curve else d / "equity.png",
        }
        eq = d / "equity.csv"
        with eq.open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["datetime", "equity", "cash", "gross_exposure"])
            for pt in self.equity_curve:
                w.writerow([pt.datetime.isoformat(), repr(pt.equity), repr(pt.cash), repr(pt.gross_exposure)])
        paths["equity_csv"] = eq
        mj = d / "metrics.json"
        mj.write_text(json.dumps(msgspec.to_builtins(self.metrics), indent=2), encoding="utf-8")
        paths["metrics"] = mj
        st = d / "summary.txt"
        st.write_text(self.summary() + "\n", encoding="utf-8")
        paths["summary"] = st
        return paths


def build_report(broker: PaperBroker, interval: str = "DAY", periods: float | None = None) -> Report:
    """The report of a broker's run so far (usable mid-run, e.g. from an RPC call)."""
    curve = list(broker.equity_curve)
    last = {p.full_symbol: p.last_price for p in broker.positions() if p.last_price is not None}
    trades = trades_from_fills(broker.fills(), last)
    ppy = periods if periods is not None else periods_per_year(interval)
    metrics = compute_metrics(curve, float(broker.settings.initial_cash), trades, ppy, broker.commission_paid)
    metrics = msgspec.structs.replace(metrics, rejected=len(broker.orders("rejected")), margin_calls=len(broker.margin_calls))
    return Report(metrics=metrics, trades=trades, equity_curve=curve)
