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
* **exposure** = share of equity-curve points with a non-zero position (at their close).
* **rejected** / **margin calls**: orders refused (by risk or the broker) and forced liquidations.

Definitions shared with backtesting.py (equal to its numbers on the same daily run; the
oracle test checks them): with ``r`` the returns between consecutive equity points and
``g`` their geometric mean, **annual return** ``(1 + g) ** periods_per_year - 1``;
**annual volatility** ``sqrt((var(r, ddof=1) + (1 + g)**2) ** P - (1 + g) ** (2 P))``;
**Sortino** = annual return / ``(sqrt(mean(min(r, 0) ** 2)) * sqrt(P))``; **Calmar** = annual
return / max drawdown; **CAGR** = ``(final / initial) ** (1 / years) - 1`` with years =
days from the first to the last equity point / 365.25; **max drawdown duration**, the longest
time from a peak to the next point at or above it (or to the end); **equity peak**. Per
closed trade, **return** = pnl / (quantity x entry price) (net of commission); **best**,
**worst**, **average** (geometric mean) trade; **expectancy** = mean trade return; **SQN**
= ``sqrt(n) * mean(pnl) / std(pnl, ddof=1)``; **win rate**; **Kelly** = ``win rate - (1 -
win rate) / (mean win / mean loss)``; average and longest trade duration (backtesting.py
rounds durations up to its bar period).

Our own definitions: **profit factor** = gross profit / gross loss of closed trades, in
cash (backtesting.py divides summed returns instead); **buy and hold** = the mean over the
traded symbols of last close / first close - 1 (backtesting.py starts after the
indicators' warm-up); **exposure** and **Sharpe** as above.

Only :func:`write_trades_csv`, :func:`plot_report` and :meth:`Report.write` touch files;
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
    "plot_report",
    "summary_table",
    "build_report",
    "run_folder",
    "run_params",
]

PriceLines = Mapping[str, Sequence[tuple[dt.datetime, float]]]

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
    tag: str = ""

    @property
    def return_pct(self) -> float | None:
        """pnl / (quantity x entry price), net of commission (a fraction; None before any quantity)."""
        base = self.quantity * self.entry_price
        return self.pnl / base if base else None

    @property
    def duration(self) -> dt.timedelta | None:
        """Exit minus entry time (None while open)."""
        return self.exit_time - self.entry_time if self.exit_time is not None else None


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
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    equity_peak: float | None = None
    buy_and_hold_return: float | None = None
    cagr: float | None = None
    return_ann: float | None = None
    volatility_ann: float | None = None
    sortino: float | None = None
    calmar: float | None = None
    max_drawdown_duration: dt.timedelta | None = None
    best_trade: float | None = None
    worst_trade: float | None = None
    avg_trade: float | None = None
    expectancy: float | None = None
    profit_factor: float | None = None
    sqn: float | None = None
    kelly: float | None = None
    avg_trade_duration: dt.timedelta | None = None
    max_trade_duration: dt.timedelta | None = None


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
                    tag=f.tag,
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


def _geometric_mean(rets: Sequence[float]) -> float:
    """exp(mean(log(1 + r))) - 1; 0 when a return is -100 % or worse (as backtesting.py)."""
    if not rets or any(1 + r <= 0 for r in rets):
        return 0.0
    return math.exp(math.fsum(math.log1p(r) for r in rets) / len(rets)) - 1


def _std(xs: Sequence[float]) -> float | None:
    if len(xs) < 2:
        return None
    mean = math.fsum(xs) / len(xs)
    return math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (len(xs) - 1))


def _drawdown_duration(curve: Sequence[EquityPoint], initial_cash: float) -> dt.timedelta | None:
    """Longest time from a peak to the next point at or above it, or to the end (None without a drawdown)."""
    peak, peak_at, longest = initial_cash, None, None
    for i, p in enumerate(curve):
        if p.equity >= peak:
            if peak_at is not None and i - peak_at > 1:
                span = p.datetime - curve[peak_at].datetime
                longest = span if longest is None else max(longest, span)
            peak, peak_at = p.equity, i
        elif peak_at is None:
            peak_at = 0  # below the initial cash from the start: the first point is the peak
    if peak_at is not None and len(curve) - 1 - peak_at >= 1:
        span = curve[-1].datetime - curve[peak_at].datetime
        longest = span if longest is None else max(longest, span)
    return longest


def _power(base: float, exp: float) -> float | None:
    """``base ** exp``, or None when it overflows a float (absurd returns compounded over a year)."""
    try:
        return base**exp
    except OverflowError:
        return None


def _curve_metrics(curve: Sequence[EquityPoint], initial_cash: float, periods: float, mdd: float) -> dict[str, Any]:
    eq = [p.equity for p in curve]
    out: dict[str, Any] = {}
    if not curve:
        return out
    out["start"], out["end"] = curve[0].datetime, curve[-1].datetime
    out["equity_peak"] = max(eq)
    years = (curve[-1].datetime - curve[0].datetime).total_seconds() / 86400 / 365.25
    if years > 0 and initial_cash > 0 and eq[-1] / initial_cash >= 0:
        growth = _power(eq[-1] / initial_cash, 1 / years)
        out["cagr"] = None if growth is None else growth - 1
    rets = [b / a - 1 for a, b in zip(eq, eq[1:]) if a]
    if len(rets) >= 2:
        g = _geometric_mean(rets)
        ann = _power(1 + g, periods)
        if ann is not None:
            ann -= 1
        out["return_ann"] = ann
        var = _std(rets) ** 2  # type: ignore[operator]
        hi, lo = _power(var + (1 + g) ** 2, periods), _power(1 + g, 2 * periods)
        inner = hi - lo if hi is not None and lo is not None else None
        out["volatility_ann"] = math.sqrt(inner) if inner is not None and inner >= 0 else None
        downside = math.sqrt(math.fsum(min(r, 0.0) ** 2 for r in rets) / len(rets)) * math.sqrt(periods)
        out["sortino"] = ann / downside if ann is not None and downside > 0 else None
        out["calmar"] = ann / mdd if ann is not None and mdd > 0 else None
    out["max_drawdown_duration"] = _drawdown_duration(curve, initial_cash)
    return out


def _trade_metrics(closed: Sequence[Trade]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    rets = [r for r in (t.return_pct for t in closed) if r is not None]
    if rets:
        out["best_trade"], out["worst_trade"] = max(rets), min(rets)
        out["avg_trade"] = _geometric_mean(rets)
        out["expectancy"] = math.fsum(rets) / len(rets)
    pnls = [t.pnl for t in closed]
    gains = math.fsum(p for p in pnls if p > 0)
    losses = -math.fsum(p for p in pnls if p < 0)
    if closed:
        out["profit_factor"] = gains / losses if losses > 0 else None
        sd = _std(pnls)
        out["sqn"] = math.sqrt(len(pnls)) * (math.fsum(pnls) / len(pnls)) / sd if sd else None
        wins, losing = [p for p in pnls if p > 0], [p for p in pnls if p < 0]
        if wins and losing:
            wr = len(wins) / len(pnls)
            out["kelly"] = wr - (1 - wr) / ((math.fsum(wins) / len(wins)) / (-math.fsum(losing) / len(losing)))
        durations = [t.duration for t in closed if t.duration is not None]
        if durations:
            out["avg_trade_duration"] = sum(durations, dt.timedelta()) / len(durations)
            out["max_trade_duration"] = max(durations)
    return out


def buy_and_hold(prices: PriceLines, symbols: Iterable[str]) -> float | None:
    """Mean over ``symbols`` of last close / first close - 1 (None when none has prices)."""
    rets = [line[-1][1] / line[0][1] - 1 for sym in symbols if (line := prices.get(sym)) and line[0][1] > 0]
    return math.fsum(rets) / len(rets) if rets else None


def compute_metrics(
    curve: Sequence[EquityPoint],
    initial_cash: float,
    trades: Sequence[Trade],
    periods: float = 252.0,
    commission: float = 0.0,
    prices: PriceLines | None = None,
) -> Metrics:
    """Metrics of an equity curve and its trades (definitions in the module docstring).

    ``prices`` (closes per symbol) gives the buy-and-hold return of the traded symbols.
    """
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
    extra = _curve_metrics(curve, initial_cash, periods, mdd) | _trade_metrics(closed)
    if prices is not None:
        extra["buy_and_hold_return"] = buy_and_hold(prices, sorted({t.full_symbol for t in trades}))
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
        **extra,
    )


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
    fig = Figure(figsize=(11, 4 + 2.5 * len(traded)), dpi=100)
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
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(p, format="png")
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

    def summary(self, title: str = "Run summary") -> str:
        """The terminal table."""
        return summary_table(self.metrics, title)

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
    from aitrados import __version__

    broker = engine.broker
    strategies = []
    for s in engine.strategies:
        item: dict[str, Any] = {"name": s.strategy_name, "class": f"{type(s).__module__}.{type(s).__qualname__}",
                                "symbols": list(s.symbols), "intervals": list(s.intervals)}
        for attr in ("size", "entry", "allow_short", "stop_loss_pct", "take_profit_pct"):
            if hasattr(s, attr):
                item[attr] = getattr(s, attr)
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
