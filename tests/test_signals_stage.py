"""The signal stage: in-process signal modules feed the strategies in step with the replay.

A real `aitrados run` runtime replays 2018's SPX days with two in-process signal modules, the
first-party ``price_action`` and a fixture (``bad_signals``: a ``tick`` per bar whose hook raises on
every 10th bar), and an in-process strategy that writes down its ``on_signal`` and ``on_bar`` calls.
Each bar's signals must come right before that bar, exactly those the pure detector gives for the
bars the strategy saw plus the fixture's ticks (one per bar but every 10th), computed once (the bus
pump's copies ignored), with the raising hook counted against its plugin and the run going on.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from aitrados.events import Kind
from aitrados.runtime import Runtime
from aitrados.signals.price_action import PriceAction
from aitrados.trading.strategy import Strategy

from fixtures.plugin_env import FIXTURES  # noqa: F401 - puts the fixture plugins on sys.path
from aitrados_testplugins.bad_signals import BadSignals  # noqa: E402

from conftest import bus_settings

pytestmark = pytest.mark.timeout(180)

UTC = dt.timezone.utc
SPX = "STOCK:US:SPX"
BAD = "aitrados_testplugins.bad_signals:BadSignals"


class Seen(Strategy):
    """Writes down each signal and bar it gets, in order."""

    name = "seen"
    symbols = (SPX,)
    intervals = ("DAY",)

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[Any, ...]] = []

    def on_signal(self, signal: Any) -> None:
        self.log.append(("signal", signal.module, signal.kind, signal.time, signal.value))

    def on_bar(self, bar: Any) -> None:
        self.log.append(("bar", bar))


def test_each_bar_s_signals_come_once_right_before_it_and_a_raising_module_is_counted(ipc_dir: str,
                                                                                     tmp_path: Path) -> None:
    s = bus_settings(ipc_dir)
    md = s.marketdata
    md.provider, md.replay_symbols = "replay", []
    md.replay_start, md.replay_end = dt.datetime(2018, 1, 1, tzinfo=UTC), "data_end"
    s.trading.report_dir = str(tmp_path / "report")
    st = Seen()
    rt = Runtime(s, plugins=[BAD, "price_action"], strategies=[st]).start()
    try:
        assert rt.wait_replay(120), "the replay did not end"
        stage = rt.trading.signal_stage
        order = [plugin for plugin, _ in stage.sources[Kind.BAR]]
        errors = dict(rt.host.runner.errors)
        published = rt.trading.signals_published
    finally:
        rt.stop()

    assert order == [BAD, "price_action"] == list(stage.plugins)  # the order of --plugins
    bars = [e[1] for e in st.log if e[0] == "bar"]
    assert len(bars) > 200
    detector = PriceAction(SPX, "DAY")
    want: list[tuple[Any, ...]] = []
    for i, b in enumerate(bars, 1):
        for plugin in order:  # the modules' signals, in the order of the selected plugins, then the bar
            if plugin == "price_action":
                want += [("signal", "price_action", g.kind, g.time, g.value) for g in detector.update(b)]
            elif i % 10:
                want.append(("signal", "bad_signals", "tick", b.datetime, float(i)))
        want.append(("bar", b))
    assert sum(w[1] == "price_action" for w in want if w[0] == "signal") > 20
    assert st.log == want
    assert errors[(BAD, "on_bar")] == len(bars) // 10  # counted against the plugin; the others went on
    ticks = len(bars) - len(bars) // 10
    assert BadSignals.module.published == ticks  # computed once: the bus pump's copies were ignored
    assert published == len(want) - len(bars)
