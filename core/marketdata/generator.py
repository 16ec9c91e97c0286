"""Seeded, deterministic 1-minute bar generator for any symbol (pure, no I/O).

The same ``(seed, full_symbol)`` always yields the same bars, and any sub-range of a request yields
exactly the bars of the larger request over that sub-range: each trading day is generated on its own
from a random stream keyed by ``(seed, symbol, date)`` as a bridge between two daily anchor prices,
and the anchors are a mean-reverting random walk keyed by ``(seed, symbol)`` from a fixed epoch.

Bars follow the symbol's session (:func:`~aitrados.marketdata.intervals.session_for`): stocks trade
their exchange's regular hours on its trading days (no bars on holidays, none after an early close:
210 minutes on 2018-12-24 in New York), FX 24 hours from Sunday to Friday 17:00 New York, crypto
24h/7d. Price levels, volatility and decimals depend on the asset class (:func:`price_model`):
EURUSD trades near 1.15 with 5 decimals, USDJPY near 110 with 3, BTCUSD within its 2018 range.
Every bar satisfies ``low <= min(open, close) <= max(open, close) <= high`` and ``volume > 0``.
"""

import datetime as dt
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .intervals import Session, session_for
from .models import Bar, normalize_full_symbol, parse_full_symbol, parse_timestamp

__all__ = ["generate_bars", "iter_bars", "base_price", "price_model", "PriceModel"]

UTC = dt.timezone.utc
_EPOCH = dt.date(1990, 1, 1)
_SPAN_DAYS = 60_000  # anchors cover 1990 .. ~2154
_MINUTE = dt.timedelta(minutes=1)


def _key(seed: int, full_symbol: str) -> int:
    return zlib.crc32(f"{int(seed)}|{full_symbol}".encode())


@dataclass(frozen=True)
class PriceModel:
    """How a symbol's generated prices behave.

    :ivar level: centre of the price walk (the price at the epoch).
    :ivar daily_vol: standard deviation of the daily log return.
    :ivar decimals: prices are rounded to this many decimals (5 for FX, 3 for JPY pairs, 2 for stocks).
    :ivar band: ``(low, high)`` log distance from ``level`` the daily anchors are kept within, or None.
    :ivar reversion: daily mean-reversion factor of the anchor walk (closer to 1: slower).
    """

    level: float
    daily_vol: float
    decimals: int
    band: tuple[float, float] | None = None
    reversion: float = 0.998


#: Known FX pairs and crypto coins: centre price, low and high of the anchor band (2017-2019 ranges).
_KNOWN: dict[tuple[str, str], tuple[float, float, float]] = {
    ("FOREX", "EURUSD"): (1.16, 1.06, 1.26), ("FOREX", "GBPUSD"): (1.32, 1.20, 1.44),
    ("FOREX", "USDJPY"): (110.0, 101.0, 118.0), ("FOREX", "AUDUSD"): (0.74, 0.66, 0.82),
    ("FOREX", "USDCAD"): (1.30, 1.22, 1.38), ("FOREX", "USDCHF"): (0.98, 0.92, 1.04),
    ("FOREX", "NZDUSD"): (0.69, 0.63, 0.75), ("FOREX", "EURGBP"): (0.88, 0.84, 0.92),
    ("FOREX", "EURJPY"): (128.0, 118.0, 138.0), ("FOREX", "XAUUSD"): (1280.0, 1180.0, 1380.0),
    ("CRYPTO", "BTCUSD"): (7000.0, 3300.0, 16500.0), ("CRYPTO", "ETHUSD"): (350.0, 90.0, 1300.0),
    ("CRYPTO", "LTCUSD"): (80.0, 25.0, 300.0), ("CRYPTO", "XRPUSD"): (0.45, 0.25, 2.5),
}


def price_model(full_symbol: str, seed: int = 0) -> PriceModel:
    """The price model of a symbol, by asset class (deterministic).

    :returns: FX pairs near their real level (known pairs from a table, others between 0.5 and 2.0;
        daily volatility 0.5 %, 5 decimals, 3 when quoted in JPY), crypto coins in their 2018 range
        (BTCUSD 3,300-16,500; others 0.5-50; 4 % a day), everything else (stocks, indices, futures)
        between 20 and 520 with 1.2 % a day and 2 decimals.
    """
    fs = normalize_full_symbol(full_symbol)
    asset, _, symbol = parse_full_symbol(fs)
    h = _key(seed, fs)
    known = _KNOWN.get((asset, symbol.replace("_", "").replace("/", "")))
    if asset == "FOREX":
        lvl, lo, hi = known or (0.5 + (h % 15_000) / 10_000.0, 0.0, 0.0)
        if not known:
            lo, hi = lvl * 0.92, lvl * 1.08
        dec = 3 if symbol.endswith("JPY") or lvl > 50 else 5
        return _model(lvl, lo, hi, 0.005, dec)
    if asset == "CRYPTO":
        lvl, lo, hi = known or (0.5 + (h % 4_950) / 100.0, 0.0, 0.0)
        if not known:
            lo, hi = lvl * 0.4, lvl * 2.5
        return _model(lvl, lo, hi, 0.04, 2 if lvl >= 100 else 4)
    return PriceModel(20.0 + (h % 50_000) / 100.0, 0.012, 2)


def _model(level: float, lo: float, hi: float, vol: float, decimals: int) -> PriceModel:
    """A model whose anchor walk's long-run spread is about a third of its band."""
    band = (float(np.log(lo / level)), float(np.log(hi / level)))
    spread = (band[1] - band[0]) / 6.0
    reversion = float(np.sqrt(max(0.0, 1.0 - (vol / spread) ** 2))) if spread > vol else 0.9
    return PriceModel(level, vol, decimals, band, reversion)


def base_price(full_symbol: str, seed: int = 0) -> float:
    """The symbol's price level at the generator's epoch (the centre of its walk), deterministic."""
    return price_model(full_symbol, seed).level


@lru_cache(maxsize=256)
def _anchors(key: int, model: PriceModel) -> np.ndarray:
    """Daily log-price anchors relative to the model's level, index = days since the epoch.

    A mean-reverting walk (stocks: daily sd 1.2 %, long-run sd about 20 %), kept inside the model's
    band when it has one, so prices stay in a sane range.
    """
    rng = np.random.default_rng([key, 0])
    steps = (rng.normal(0.0, model.daily_vol, _SPAN_DAYS)).tolist()
    out = [0.0] * (_SPAN_DAYS + 1)
    x, phi = 0.0, model.reversion
    lo, hi = model.band if model.band else (-np.inf, np.inf)
    for i, e in enumerate(steps, 1):
        x = min(hi, max(lo, x * phi + e))
        out[i] = x
    return np.array(out)


def _day_minutes(day: dt.date, s: Session) -> tuple[dt.datetime, int]:
    """First minute (UTC) and number of minutes the session trades on trading date ``day``
    (390 on a regular New York day, 210 on a 13:00 early close, 1440 on a 24-hour session)."""
    start = s.day_start(day)
    return start, int((s.day_end(day) - start) // _MINUTE)


def _day_bars(fs: str, key: int, day: dt.date, s: Session, m: PriceModel) -> Iterator[Bar]:
    idx = (day - _EPOCH).days
    if idx < 1 or idx >= _SPAN_DAYS:
        raise ValueError(f"generator covers {_EPOCH + dt.timedelta(days=1)} .. {_EPOCH + dt.timedelta(days=_SPAN_DAYS - 1)}; got {day}")
    anchors = _anchors(key, m)
    start_lp, end_lp = anchors[idx - 1], anchors[idx]
    first, n = _day_minutes(day, s)
    p0, dec = m.level, m.decimals
    rng = np.random.default_rng([key, 1, idx])
    sigma = m.daily_vol / np.sqrt(n)
    steps = rng.normal(0.0, sigma, n)
    path = np.cumsum(steps)
    # bridge: the day ends exactly on its anchor
    path += (end_lp - start_lp - path[-1]) * (np.arange(1, n + 1) / n)
    closes = np.round(p0 * np.exp(start_lp + path), dec)
    closes[-1] = round(p0 * np.exp(end_lp), dec)  # same formula as the next day's first open: continuous
    opens = np.empty(n)
    opens[0] = round(p0 * np.exp(start_lp), dec)
    opens[1:] = closes[:-1]
    wick = np.abs(rng.normal(0.0, sigma, (2, n)))
    highs = np.round(np.maximum(opens, closes) * np.exp(wick[0]), dec)
    lows = np.round(np.minimum(opens, closes) * np.exp(-wick[1]), dec)
    highs = np.maximum(highs, np.maximum(opens, closes))
    lows = np.minimum(lows, np.minimum(opens, closes))
    u = np.linspace(-1.0, 1.0, n)
    shape = 1.0 + 1.5 * u * u if not s.is_24h else np.ones(n)  # U-shaped intraday volume for stocks
    vols = np.round(rng.lognormal(7.0, 0.5, n) * shape) + 1.0
    vwaps = np.clip(np.round((highs + lows + closes) / 3.0, dec + 2), lows, highs)
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
    model = price_model(fs, seed)
    day = s.day_of(t0) - dt.timedelta(days=1)
    last = s.day_of(t1)
    while day <= last:
        if s.is_trading_day(day):
            first, n = _day_minutes(day, s)
            if first + n * _MINUTE > t0 and first < t1:
                for b in _day_bars(fs, key, day, s, model):
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
