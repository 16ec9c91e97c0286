"""The price_action plugin in a real replay, in-process and isolated: every closed bar streamed on
the bus gives exactly the signals of the pure detector, on signal.price_action.<full_symbol>."""

from __future__ import annotations

from typing import Any

import pytest

from aitrados.marketdata.models import Bar
from aitrados.runtime import Runtime
from aitrados.signals import parse_signal_topic
from aitrados.signals.price_action import PriceAction
from aitrados_strategies.rsi_reversion import RsiReversion

from fixtures.plugin_env import FIXTURES  # noqa: F401 - puts the fixture plugins on sys.path
from aitrados_testplugins import signal_listener as listener  # noqa: E402

from conftest import bus_settings
from replay_collect import replay_and_collect

SYM = "CRYPTO:GLOBAL:BTCUSD"


def replay_signals(ipc_dir: str, tmp_path: Any, isolate: bool) -> tuple[list[Bar], list[tuple[str, Any]]]:
    s = bus_settings(ipc_dir)
    md = s.marketdata
    md.provider, md.replay_symbols, md.replay_days, md.replay_history_days = "replay", [SYM], 0.3, 0.05
    s.trading.report_dir = str(tmp_path / f"report-{isolate}")
    s.plugins["price_action"] = {"symbols": [SYM], "intervals": ["5M"], "left": 2, "right": 2}
    listener.SEEN.clear()
    rt = Runtime(s, plugins=["price_action", "aitrados_testplugins.signal_listener:Listener"],
                 isolate=["price_action"] if isolate else [],
                 strategies=[RsiReversion(SYM, "5M", quantity=1)], start_clock=False).start()
    bars: list[Bar] = []
    signals: list[tuple[str, Any]] = []

    def take(m: Any) -> None:
        if m.topic.startswith("signal."):
            signals.append((m.topic, m.data))
        elif m.data["closed"]:
            bars.append(Bar(**{k: m.data[k] for k in Bar.__struct_fields__ if k in m.data}))

    try:
        replay_and_collect(rt, [f"ohlc.{SYM}.5M", "signal."], take,
                           lambda: len(signals) >= len(expected(bars)) and len(listener.SEEN) >= len(signals), 90)
    finally:
        rt.stop()
    return bars, signals


def expected(bars: list[Bar]) -> list[Signal]:
    pa = PriceAction(SYM, "5M", left=2, right=2)
    return [s for b in bars for s in pa.update(b)]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("isolate", [False, True])
def test_price_action_plugin_publishes_the_detectors_signals(ipc_dir: str, tmp_path: Any, isolate: bool) -> None:
    bars, signals = replay_signals(ipc_dir, tmp_path, isolate)
    assert len(bars) > 50
    want = [(s.topic, s.kind, s.time.isoformat(), s.value) for s in expected(bars)]
    assert len(want) > 20
    got = []
    for topic, data in signals:
        assert parse_signal_topic(topic) == ("price_action", SYM)
        got.append((topic, data["kind"], data["time"] if isinstance(data["time"], str) else data["time"].isoformat(),
                    data["value"]))
    assert got == want
    assert [(s.topic, s.kind, s.time.isoformat(), s.value) for s in listener.SEEN] == want, \
        "a plugin's on_signal hook gets every signal as a Signal record"
