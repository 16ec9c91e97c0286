"""Price action, bar by bar, equals a pandas reference over the bundled S&P 500 and NASDAQ history;
the signal record and topic grammar."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from aitrados.marketdata.loader import bundled_bar_files, load_bars
from aitrados.signals import Signal, parse_signal_topic, signal_topic
from aitrados.signals.price_action import PriceAction

SERIES = [("STOCK:US:SPX", "DAY"), ("STOCK:US:IXIC", "DAY")]


def frame(fs: str, iv: str) -> tuple[list, pd.DataFrame]:
    bars = load_bars(bundled_bar_files()[(fs, iv)]).bars
    df = pd.DataFrame({"t": [b.datetime for b in bars], "o": [b.open for b in bars], "h": [b.high for b in bars],
                       "l": [b.low for b in bars], "c": [b.close for b in bars]})
    return bars, df


def reference(df: pd.DataFrame, left: int, right: int, z: float, wick: float, body: float) -> set[tuple]:
    """The same definitions, written over whole columns with pandas."""
    o, h, lo, c, t = df.o, df.h, df.l, df.c, df.t
    out: set[tuple] = set()

    def add(kind: str, mask: pd.Series, value: pd.Series) -> None:
        for i in np.flatnonzero(mask.fillna(False).to_numpy(bool)):
            out.add((kind, t.iloc[i], round(float(value.iloc[i]), 6)))

    ph, pl, po, pc = h.shift(1), lo.shift(1), o.shift(1), c.shift(1)
    add("inside_bar", (h < ph) & (lo > pl), c)
    add("outside_bar", (h > ph) & (lo < pl), c)
    add("engulfing_bull", (pc < po) & (c > o) & (o <= pc) & (c >= po), c)
    add("engulfing_bear", (pc > po) & (c < o) & (o >= pc) & (c <= po), c)
    rng, bod = h - lo, (c - o).abs()
    pin = (rng > 0) & (bod <= body * rng)
    bull_pin = pin & (np.minimum(o, c) - lo >= wick * rng)
    add("pin_bar_bull", bull_pin, c)
    add("pin_bar_bear", pin & ~bull_pin & (h - np.maximum(o, c) >= wick * rng), c)
    is_ph = (h > h.shift(1).rolling(left).max()) & (h >= h.shift(-right).rolling(right).max())
    is_pl = (lo < lo.shift(1).rolling(left).min()) & (lo <= lo.shift(-right).rolling(right).min())
    # a pivot at i is known at bar i+right (signalled there with the pivot's level)
    add("pivot_high", is_ph.shift(right, fill_value=False), h.shift(right))
    add("pivot_low", is_pl.shift(right, fill_value=False), lo.shift(right))
    for kind, is_p, level_src, sign in (("breakout_up", is_ph, h, 1), ("breakout_down", is_pl, lo, -1)):
        known = is_p.shift(right + 1, fill_value=False)  # usable from the bar after it is known
        level = level_src.shift(right + 1).where(known).ffill()
        pid = known.cumsum()
        cond = (c > level * (1 + z)) if sign > 0 else (c < level * (1 - z))
        cond &= pid > 0
        first = cond & (cond.astype(int).groupby(pid).cumsum() == 1)
        add(kind, first, level)
    return out


@pytest.mark.parametrize("fs,iv", SERIES)
@pytest.mark.parametrize("left,right,z", [(3, 3, 0.0), (5, 2, 0.002), (1, 1, 0.0)])
def test_price_action_equals_the_pandas_reference(fs: str, iv: str, left: int, right: int, z: float) -> None:
    bars, df = frame(fs, iv)
    pa = PriceAction(fs, iv, left=left, right=right, zone_pct=z)
    got: set[tuple] = set()
    for b in bars:
        for s in pa.update(b):
            s.validate()
            assert s.module == "price_action" and s.full_symbol == fs and s.time == b.datetime
            got.add((s.kind, s.time, round(float(s.value), 6)))
    want = reference(df, left, right, z, 0.6, 0.3)
    assert got == want
    kinds = {k for k, _, _ in got}
    assert kinds == {"inside_bar", "outside_bar", "engulfing_bull", "engulfing_bear", "pin_bar_bull", "pin_bar_bear",
                     "pivot_high", "pivot_low", "breakout_up", "breakout_down"}, "every pattern occurs in 20 years"


def test_signal_record_and_topics() -> None:
    t = dt.datetime(2018, 1, 2, tzinfo=dt.timezone.utc)
    s = Signal(module="price_action", full_symbol="STOCK:US:SPX", time=t, kind="breakout_up", score=0.8,
               confidence=0.6, value=2700.0, reason="close above resistance").validate()
    assert s.topic == "signal.price_action.STOCK:US:SPX" == signal_topic("price_action", "STOCK:US:SPX")
    assert parse_signal_topic(s.topic) == ("price_action", "STOCK:US:SPX")
    for bad in ({"score": 1.5}, {"confidence": -0.1}, {"module": "Price Action"}, {"full_symbol": "spx"},
                {"time": dt.datetime(2018, 1, 2)}, {"value": float("nan")}):
        with pytest.raises(ValueError):
            Signal(**{**{f: getattr(s, f) for f in s.__struct_fields__}, **bad}).validate()
    for topic in ("signal.price_action", "ohlc.STOCK:US:SPX.DAY", "signal.Bad.X"):
        with pytest.raises(ValueError, match="not a signal topic"):
            parse_signal_topic(topic)


def test_price_action_rejects_bad_parameters() -> None:
    for kw in ({"left": 0}, {"right": 0}, {"zone_pct": 1.0}, {"pin_wick": 0.0}, {"pin_body": 1.0}):
        with pytest.raises(ValueError):
            PriceAction("STOCK:US:SPX", "DAY", **kw)
