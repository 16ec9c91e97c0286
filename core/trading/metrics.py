"""Run metrics: round trips from fills, and the numbers of an equity curve and its trades.

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

Pure functions, no files (:mod:`aitrados.trading.report` writes them).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec

from .broker import EquityPoint
from .orders import Fill

__all__ = [
    "PriceLines",
    "Trade",
    "Metrics",
    "periods_per_year",
    "trades_from_fills",
    "buy_and_hold",
    "compute_metrics",
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
