"""Incremental indicators against `ta` (the oracle) on the bundled real S&P 500 daily bars."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import ta
from hypothesis import given, settings
from hypothesis import strategies as st

from aitrados.marketdata.loader import bundled_bar_files, load_bars
from aitrados.trading.indicators import ATR, EMA, RSI, SMA, BollingerBands


@pytest.fixture(scope="module")
def spx() -> pd.DataFrame:
    bars = load_bars(bundled_bar_files()[("STOCK:US:SPX", "DAY")]).bars
    assert len(bars) > 5000
    return pd.DataFrame({"open": [b.open for b in bars], "high": [b.high for b in bars],
                         "low": [b.low for b in bars], "close": [b.close for b in bars]})


def _feed(ind, values) -> np.ndarray:
    return np.array([np.nan if (v := ind.update(x)) is None else v for x in values], dtype=float)


def _same(ours: np.ndarray, oracle: np.ndarray, rtol: float = 1e-10, atol: float = 1e-9, least: int = 100) -> None:
    # warm-up positions agree (NaN in both), then values agree to rounding
    assert np.array_equal(np.isnan(ours), np.isnan(oracle)), "warm-up differs from ta"
    mask = ~np.isnan(oracle)
    assert mask.sum() >= least
    np.testing.assert_allclose(ours[mask], oracle[mask], rtol=rtol, atol=atol)


@pytest.mark.parametrize("period", [1, 20, 50, 200])
def test_sma_matches_ta(spx: pd.DataFrame, period: int) -> None:
    oracle = ta.trend.SMAIndicator(spx["close"], window=period).sma_indicator().to_numpy()
    _same(_feed(SMA(period), spx["close"]), oracle)


@pytest.mark.parametrize("period", [12, 26])
def test_ema_matches_ta(spx: pd.DataFrame, period: int) -> None:
    oracle = ta.trend.EMAIndicator(spx["close"], window=period).ema_indicator().to_numpy()
    _same(_feed(EMA(period), spx["close"]), oracle)


@pytest.mark.parametrize("period", [2, 14, 30])
def test_rsi_matches_ta(spx: pd.DataFrame, period: int) -> None:
    oracle = ta.momentum.RSIIndicator(spx["close"], window=period).rsi().to_numpy()
    _same(_feed(RSI(period), spx["close"]), oracle, rtol=1e-9, atol=1e-8)


def test_bollinger_matches_ta(spx: pd.DataFrame) -> None:
    bb = ta.volatility.BollingerBands(spx["close"], window=20, window_dev=2)
    ours = BollingerBands(20, 2.0)
    got = [ours.update(x) for x in spx["close"]]
    lo = np.array([np.nan if g is None else g[0] for g in got])
    mid = np.array([np.nan if g is None else g[1] for g in got])
    hi = np.array([np.nan if g is None else g[2] for g in got])
    _same(mid, bb.bollinger_mavg().to_numpy())
    _same(hi, bb.bollinger_hband().to_numpy(), rtol=1e-9, atol=1e-7)
    _same(lo, bb.bollinger_lband().to_numpy(), rtol=1e-9, atol=1e-7)


def test_atr_matches_ta(spx: pd.DataFrame) -> None:
    oracle = ta.volatility.AverageTrueRange(spx["high"], spx["low"], spx["close"], window=14).average_true_range().to_numpy()
    ours = ATR(14)
    got = np.array([np.nan if (v := ours.update(h, l, c)) is None else v
                    for h, l, c in zip(spx["high"], spx["low"], spx["close"])])
    # ta reports 0.0 (not NaN) during warm-up; compare from the first value on
    assert np.isnan(got[:13]).all() and not np.isnan(got[13:]).any()
    np.testing.assert_allclose(got[13:], oracle[13:], rtol=1e-10, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from([-2.0, -0.5, 0.0, 0.0, 0.25, 1.0, 3.0]), min_size=20, max_size=120))
def test_rsi_matches_ta_on_random_walks_with_flat_runs(steps: list[float]) -> None:
    # flat stretches and one-way runs hit the avg-loss == 0 branch (RSI 100) of both
    closes = pd.Series(100.0 + np.cumsum(steps))
    oracle = ta.momentum.RSIIndicator(closes, window=5).rsi().to_numpy()
    _same(_feed(RSI(5), closes), oracle, rtol=1e-9, atol=1e-8, least=len(steps) - 4)


def test_bad_input_is_reported() -> None:
    for cls in (SMA, EMA, RSI, BollingerBands, ATR):
        with pytest.raises(ValueError, match="period"):
            cls(0)
    with pytest.raises(ValueError, match="non-finite"):
        SMA(3).update(math.nan)
    with pytest.raises(ValueError, match="high .* below low"):
        ATR(3).update(1.0, 2.0, 1.5)


def test_sma_stays_exact_over_a_long_run() -> None:
    # the periodic re-sum keeps the running sum from drifting over 100k updates
    rng = np.random.default_rng(7)
    xs = 1e6 + rng.normal(0, 1e3, 100_000)
    s = SMA(30)
    for x in xs:
        s.update(x)
    assert s.value == pytest.approx(math.fsum(xs[-30:]) / 30, rel=1e-14, abs=0)
