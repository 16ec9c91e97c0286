"""Seeded, deterministic 1-minute bar generator for any symbol (pure, no I/O).

The same ``(seed, full_symbol)`` always yields the same bars, and any sub-range of a request yields
exactly the bars of the larger request over that sub-range: each trading day is generated on its own
from a random stream keyed by ``(seed, symbol, date)`` as a bridge between two daily anchor prices,
and the anchors are a random walk keyed by ``(seed, symbol)`` from a fixed epoch. Stocks trade only in
their session (regular hours, trading weekdays, minus the session's holidays); crypto trades 24h/7d.
Every bar satisfies ``low <= min(open, close) <= max(open, close) <= high`` and ``volume > 0``.
"""

import datetime as dt
import zlib
from collections.abc import Iterator
from functools import lru_cache

import numpy as np

from aitrados.marketdata.intervals import Session, session_for
from aitrados.marketdata.models import Bar, normalize_full_symbol, parse_timestamp

__all__ = ["generate_bars", "iter_bars", "base_price"]

UTC = dt.timezone.utc
_EPOCH = dt.date(1990, 1, 1)
_SPAN_DAYS = 60_000  # anchors cover 1990 .. ~2154
_MINUTE = dt.timedelta(minutes=1)


def _key(seed: int, full_symbol: str) -> int:
    return zlib.crc32(f"{int(seed)}|{full_symbol}".encode())


def base_price(full_symbol: str, seed: int = 0) -> float:
    """The symbol's price level at the generator's epoch (between 20 and 520), deterministic."""
    return 20.0 + (_key(seed, normalize_full_symbol(full_symbol)) % 50_000) / 100.0


@lru_cache(maxsize=256)
def _anchors(key: int) -> np.ndarray:
    """Daily log-price anchors relative to :func:`base_price`, index = days since the epoch.

    A mean-reverting walk (daily sd 1.2 %, long-run sd about 20 %), so prices stay in a sane range.
    """
    rng = np.random.default_rng([key, 0])
    steps = rng.normal(0.0, 0.012, _SPAN_DAYS).tolist()
    out = [0.0] * (_SPAN_DAYS + 1)
    x = 0.0
    for i, e in enumerate(steps, 1):
        x = x * 0.998 + e
        out[i] = x
    return np.array(out)


def _day_minutes(day: dt.date, s: Session) -> tuple[dt.datetime, int]:
    """First minute (UTC) and number of minutes the session trades on ``day``."""
    if s.is_24h:
        return s.at(day, dt.time(0)), 1440
    start = s.at(day, s.open)
    mins = (dt.datetime.combine(day, s.close) - dt.datetime.combine(day, s.open)) // _MINUTE
    return start, int(mins)


def _day_bars(fs: str, key: int, day: dt.date, s: Session, p0: float) -> Iterator[Bar]:
    idx = (day - _EPOCH).days
    if idx < 1 or idx >= _SPAN_DAYS:
        raise ValueError(f"generator covers {_EPOCH + dt.timedelta(days=1)} .. {_EPOCH + dt.timedelta(days=_SPAN_DAYS - 1)}; got {day}")
    anchors = _anchors(key)
    start_lp, end_lp = anchors[idx - 1], anchors[idx]
    first, n = _day_minutes(day, s)
    rng = np.random.default_rng([key, 1, idx])
    sigma = 0.012 / np.sqrt(n)
    steps = rng.normal(0.0, sigma, n)
    path = np.cumsum(steps)
    # bridge: the day ends exactly on its anchor
    path += (end_lp - start_lp - path[-1]) * (np.arange(1, n + 1) / n)
    closes = np.round(p0 * np.exp(start_lp + path), 2)
    closes[-1] = round(p0 * np.exp(end_lp), 2)  # same formula as the next day's first open: continuous
    opens = np.empty(n)
    opens[0] = round(p0 * np.exp(start_lp), 2)
    opens[1:] = closes[:-1]
    wick = np.abs(rng.normal(0.0, sigma, (2, n)))
    highs = np.round(np.maximum(opens, closes) * np.exp(wick[0]), 2)
    lows = np.round(np.minimum(opens, closes) * np.exp(-wick[1]), 2)
    highs = np.maximum(highs, np.maximum(opens, closes))
    lows = np.minimum(lows, np.minimum(opens, closes))
    u = np.linspace(-1.0, 1.0, n)
    shape = 1.0 + 1.5 * u * u if not s.is_24h else np.ones(n)  # U-shaped intraday volume for stocks
    vols = np.round(rng.lognormal(7.0, 0.5, n) * shape) + 1.0
    vwaps = np.round((highs + lows + closes) / 3.0, 4)
    t = first
    for i in range(n):
        t2 = t + _MINUTE
        yield Bar(fs, "1M", t, t2, float(opens[i]), float(highs[i]), float(lows[i]), float(closes[i]), float(vols[i]), float(vwaps[i]), True)
        t = t2


def iter_bars(
    full_symbol: str,
    start: dt.datetime | str,
    end: dt.datetime | str,
    seed: int = 0,
    session: Session | None = None,
) -> Iterator[Bar]:
    """Yield the 1-minute bars of ``full_symbol`` whose open time is in ``[start, end)``, oldest first.

    :param session: trading session; default :func:`~aitrados.marketdata.intervals.session_for`.
    :raises ValueError: for a malformed symbol or timestamps, or ``end`` before ``start``.
    """
    fs = normalize_full_symbol(full_symbol)
    s = session or session_for(fs)
    t0, t1 = parse_timestamp(start), parse_timestamp(end)
    if t1 < t0:
        raise ValueError(f"end {t1} is before start {t0}")
    key = _key(seed, fs)
    p0 = base_price(fs, seed)
    day = s.local(t0).date() - dt.timedelta(days=1)
    last = s.local(t1).date()
    while day <= last:
        if s.is_trading_day(day):
            first, n = _day_minutes(day, s)
            if first + n * _MINUTE > t0 and first < t1:
                for b in _day_bars(fs, key, day, s, p0):
                    if t0 <= b.datetime < t1:
                        yield b
        day += dt.timedelta(days=1)


def generate_bars(
    full_symbol: str,
    start: dt.datetime | str,
    end: dt.datetime | str,
    seed: int = 0,
    session: Session | None = None,
) -> list[Bar]:
    """The 1-minute bars of :func:`iter_bars` as a list."""
    return list(iter_bars(full_symbol, start, end, seed, session))
