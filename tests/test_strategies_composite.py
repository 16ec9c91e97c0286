"""The composite strategy: it trades on the bundled data from signals, and its decisions equal a pandas oracle.

The oracle takes what reached the strategy — the bars and the signals of the price-action, macro and
breaking-news modules, recorded as they arrived, and the account's equity before each bar (the
broker's, for the risk sizing) — and computes every decision again with pandas: the EMA trend, the
Wilder ATR, the breakout still valid at each bar, the news sentiment window, the macro blocks, the
sizes. The decisions compared are the broker's orders of the strategy (the position each decision
asked for), not anything the strategy reports about itself.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from aitrados.runtime import Runtime
from aitrados_strategies.composite import Composite

from fixtures.plugin_env import install

from conftest import bus_settings
from test_cli_run import aitrados, clean_env
from test_strategies_parity import run

pytestmark = pytest.mark.timeout(300)

UTC = dt.timezone.utc
SPX = "STOCK:US:SPX"
MODULES = ["price_action", "macro", "breaking_news"]


class Recorded(Composite):
    """The composite strategy, writing down its inputs as they arrive (before its own code runs)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.seen_bars: list[tuple[Any, ...]] = []
        self.seen_signals: list[Any] = []

    def on_signal(self, signal: Any) -> None:
        self.seen_signals.append(signal)
        super().on_signal(signal)

    def on_bar(self, bar: Any) -> None:
        acct = self.ctx.account()
        self.seen_bars.append((bar.datetime, bar.close_datetime, bar.open, bar.high, bar.low, bar.close,
                               acct.equity if acct is not None else math.nan))
        super().on_bar(bar)


def oracle(bars: pd.DataFrame, signals: pd.DataFrame, p: dict[str, Any]) -> tuple[list[tuple[Any, float]], dict[str, int]]:
    """The positions the rule asks for, ``[(bar close, signed units)]``, and how often each filter decided."""
    close = bars.close
    ema = close.ewm(span=p["trend_period"], adjust=False).mean()
    prev = close.shift()
    tr = pd.concat([bars.high - bars.low, (bars.high - prev).abs(), (bars.low - prev).abs()], axis=1).max(axis=1)
    n = p["atr_period"]
    seeded = pd.concat([pd.Series([tr.iloc[:n].mean()], index=[tr.index[n - 1]]), tr.iloc[n:]])
    atr = seeded.ewm(alpha=1 / n, adjust=False).mean().reindex(tr.index)
    trend = np.sign(close - ema)

    br = signals[(signals.module == "price_action") & signals.kind.isin(["breakout_up", "breakout_down"])]
    br = br.assign(d=br.kind.map({"breakout_up": 1, "breakout_down": -1}), bt=br.time)[["bt", "d"]]
    m = pd.merge_asof(bars[["time"]], br.sort_values("bt", kind="stable"), left_on="time", right_on="bt",
                      direction="backward")
    oldest = bars.start.shift(p["confirm_bars"] - 1).fillna(bars.start.iloc[0])
    setup = np.where(m.bt.notna() & (m.bt >= oldest), m.d.fillna(0), 0).astype(int)

    news = signals[(signals.module == "news") & (signals.kind == "sentiment")].sort_values("time", kind="stable")
    nt, cs = news.time.to_numpy(), np.concatenate([[0.0], news.score.cumsum().to_numpy()])
    hi = np.searchsorted(nt, bars.time.to_numpy(), side="right")
    lo = np.searchsorted(nt, (bars.time - p["news_window"]).to_numpy(), side="right")
    sentiment = np.where(hi > lo, (cs[hi] - cs[lo]) / np.maximum(hi - lo, 1), 0.0)

    aside = signals[(signals.module == "macro") & (signals.kind == "stand_aside")]
    windows = [(pd.Timestamp(d["from"]), pd.Timestamp(d["until"])) for d in aside.data]
    surprises = signals[(signals.module == "macro") & (signals.kind == "surprise")]

    ready = max(p["trend_period"], n) - 1
    wanted, units, out = 0, 0.0, []
    used = {"entries": 0, "news_scaled": 0, "stand_aside": 0, "surprise": 0, "exits": 0}
    for i in range(ready, len(bars)):
        t, s, tr_ = bars.time.iloc[i], int(setup[i]), int(trend.iloc[i])
        target = wanted
        if wanted:
            if tr_ != wanted or s == -wanted:
                target = 0
                used["exits"] += 1
        elif s and s == tr_ and (s > 0 or p["allow_short"]):
            recent = surprises[(surprises.time > t - p["macro_window"]) & (surprises.time <= t)]
            if any(a <= t <= b for a, b in windows):
                used["stand_aside"] += 1
            elif ((s * recent.score) <= -p["macro_block"]).any():
                used["surprise"] += 1
            else:
                scale = max(0.0, 1 + p["news_weight"] * s * sentiment[i])
                eq = bars.equity.iloc[i]
                u = math.floor(eq * p["risk"] / (p["stop_atr"] * atr.iloc[i]))
                u = math.floor(min(u, math.floor(eq * p["max_exposure"] / close.iloc[i])) * scale)
                if u > 0:
                    target, units = s, float(u)
                    used["entries"] += 1
                    used["news_scaled"] += sentiment[i] != 0
        if target != wanted:
            out.append((t, target * units))
            wanted = target
    return out, used


def test_decisions_equal_a_pandas_oracle_of_the_same_signals(ipc_dir: str, tmp_path: Path) -> None:
    # windows wide enough that the 2018 news and calendar samples meet some entries
    p = {"trend_period": 20, "atr_period": 14, "confirm_bars": 5, "risk": 0.01, "stop_atr": 2.0,
         "max_exposure": 1.0, "allow_short": True, "news_weight": 0.8, "news_window": dt.timedelta(days=20),
         "macro_block": 0.1, "macro_window": dt.timedelta(days=20)}
    strat = Recorded(**p)
    s = bus_settings(ipc_dir)
    md = s.marketdata
    md.provider, md.replay_symbols = "replay", []
    md.replay_start, md.replay_end = dt.datetime(2012, 1, 1, tzinfo=UTC), "data_end"
    s.trading.report_dir = str(tmp_path / "report")
    rt = Runtime(s, plugins=MODULES, strategies=[strat]).start()
    try:
        assert rt.wait_replay(240), "the replay did not end"
        orders = sorted(rt.trading.engine.broker.orders(), key=lambda o: o.id)
    finally:
        rt.stop()

    bars = pd.DataFrame(strat.seen_bars, columns=["start", "time", "open", "high", "low", "close", "equity"])
    signals = pd.DataFrame([{"module": g.module, "kind": g.kind, "time": g.time, "score": g.score, "data": g.data}
                            for g in strat.seen_signals])
    assert len(bars) > 1500 and {"price_action", "macro", "news"} <= set(signals.module)
    expected, used = oracle(bars, signals, p)

    assert all(o.status == "filled" and o.strategy == "composite" for o in orders)
    position, actual = 0.0, []
    for o in orders:  # one order per decision: the position it asks for
        position += o.quantity if o.side == "buy" else -o.quantity
        actual.append((o.created_at, position))
    assert [(pd.Timestamp(t), q) for t, q in actual] == [(pd.Timestamp(t), q) for t, q in expected]
    assert len(expected) >= 20, used  # the rule traded many times
    # every filter took part in some decision, so the comparison covers them all
    assert used["exits"] and used["news_scaled"] and used["stand_aside"] and used["surprise"], used
    assert any(q < 0 for _, q in expected) and any(q > 0 for _, q in expected)


def test_aitrados_run_with_the_signal_modules_trades_on_the_bundled_data(tmp_path: Path, ipc_dir: str) -> None:
    r = aitrados("run", "--plugins", ",".join([*MODULES, "composite"]), "--report-dir", "rep",
                 env=clean_env(ipc_dir), cwd=tmp_path, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "signal modules in step with the replay: price_action, macro, breaking_news" in r.stderr
    metrics = json.loads((tmp_path / "rep" / "latest" / "metrics.json").read_text())
    trades = pd.read_csv(tmp_path / "rep" / "latest" / "trades.csv")
    assert metrics["trades"] > 20 and len(trades) == metrics["trades"]
    assert set(trades.full_symbol) == {SPX}


def test_isolated_signal_modules_give_the_same_callbacks_and_fills(ipc_dir: str, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The composite with its price-action and news modules in-process, then each module in its own worker
    (the stage asks the worker per event), the strategy in-process and isolated: the same callbacks,
    signals included, and fills."""
    install(tmp_path, monkeypatch, {"callbacks": "aitrados_testplugins.callbacks"})
    local = run("composite", ipc_dir, tmp_path, isolate=False)
    modules = ("price_action", "breaking_news")
    calls = local[0]
    assert sum(c[0] == "on_signal" for c in calls) > 50 and len(local[1]) >= 4
    assert {c[2][1] for c in calls if c[0] == "on_signal"} == {"price_action", "macro", "news"}
    # the strategy in-process, then isolated too (it hears the signals on the bus: each must come once)
    for isolate in (False, True):
        apart = run("composite", ipc_dir, tmp_path, isolate=isolate, isolate_modules=modules)
        for i, (a, b) in enumerate(zip(calls, apart[0])):
            assert a == b, f"callback #{i} differs: all in-process {a} vs modules isolated {b} (strategy too: {isolate})"
        assert len(apart[0]) == len(calls) and apart[1:] == local[1:]


@pytest.mark.parametrize("size, direction, sentiment, want", [
    (10.0, 1, 0.5, 7.0 + 5.0),      # units scaled by 1 + 0.5 * 1 * 0.5 = 1.25, floored: 12
    (10.0, -1, 0.5, 7.0),           # a short against good news: 0.75
    (10.0, 1, -3.0, 0.0),           # scale floored at 0: no entry
    ("50%", 1, 0.5, "62.5%"),       # a share of equity is scaled too
    ("90%", 1, 1.0, "100%"),        # ... at most all of it
])
def test_fixed_sizes_are_scaled_by_the_news(size: Any, direction: int, sentiment: float, want: Any) -> None:
    bar = type("B", (), {"close": 100.0})()
    assert Composite(risk=None, size=size).entry_size(bar, direction, sentiment) == want


def test_bad_settings_are_refused_naming_the_field() -> None:
    from aitrados_strategies.composite import CompositeSettings

    with pytest.raises(ValueError, match="risk"):
        CompositeSettings(risk=2)
    with pytest.raises(ValueError, match="trend_period"):
        Composite(trend_period=0)
    assert CompositeSettings(size="99.99%", risk=None).size == "99.99%"
