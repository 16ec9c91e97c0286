"""The garbage collector around a run (``aitrados.collector``): start-up objects frozen during the
replay, everything as it was afterwards, and a process's own frozen objects left frozen."""

from __future__ import annotations

import datetime as dt
import gc
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from aitrados.collector import RunCollector
from aitrados.events import Kind, consumes
from aitrados.gil import RUN_SWITCH_INTERVAL
from aitrados.marketdata.settings import MarketDataSettings
from aitrados.runtime import Runtime
from aitrados.trading.strategy import Strategy

from conftest import PATIENT_HEARTBEATS, bus_settings

pytestmark = pytest.mark.timeout(120)
SYMS = ["STOCK:US:S000", "STOCK:US:S001"]


def frozen(obj: object) -> bool:
    """True when *obj* is in the permanent generation (tracked, yet in no generation the collector walks)."""
    return gc.is_tracked(obj) and not any(o is obj for o in gc.get_objects())


@pytest.fixture
def thawed() -> Iterator[None]:
    """Start with nothing frozen (as a fresh interpreter does); leave nothing frozen."""
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_hold_freezes_and_the_last_release_thaws(thawed: None) -> None:
    a, b = RunCollector(), RunCollector()
    before = [1, 2]
    a.hold()
    a.hold()  # idempotent
    assert frozen(before) and gc.get_freeze_count() > 0
    b.hold()
    a.release()
    assert frozen(before)  # b still holds
    b.release()
    b.release()  # idempotent
    assert not frozen(before) and gc.get_freeze_count() == 0


def test_objects_frozen_before_the_hold_stay_frozen(thawed: None) -> None:
    mine = ["frozen by the process itself"]
    gc.freeze()
    c = RunCollector()
    c.hold()
    later = [object()]
    c.release()
    assert frozen(mine)  # the process's own freeze is kept (it cannot be undone in part: nothing is thawed)
    assert not frozen(later)  # made after the hold: never frozen


class Looker(Strategy):
    name = "looker"
    intervals = ("1M",)
    symbols = tuple(SYMS)

    def on_bar(self, bar: Any) -> None:
        self.last = bar


def test_a_run_freezes_its_start_up_objects_during_the_replay_and_restores_the_collector(
        thawed: None, ipc_dir: str, tmp_path: Any) -> None:
    s = bus_settings(ipc_dir, **PATIENT_HEARTBEATS)
    s.marketdata = MarketDataSettings(provider="replay", replay_symbols=SYMS,
                                      replay_start=dt.datetime(2018, 3, 5, 14, 30, tzinfo=dt.timezone.utc),
                                      replay_days=0.1, replay_history_days=0.05, replay_bundled=False)
    s.trading.report_dir = str(tmp_path / "report")
    thresholds, enabled, switch = gc.get_threshold(), gc.isenabled(), sys.getswitchinterval()
    during: list[int] = []
    switch_during: set[float] = set()

    @consumes(Kind.BAR)
    def watch(kind: str, obj: Any) -> None:
        during.append(gc.get_freeze_count())
        switch_during.add(sys.getswitchinterval())

    rt = Runtime(s, plugins=[], strategies=[Looker()], start_clock=False).start()
    try:
        assert rt.collector.held
        rt.hub.consumers.append(watch)
        hub = rt.hub
        rt.start_replay()
        assert rt.wait_replay(90), "the replay did not end"
        assert not rt.collector.held and gc.get_freeze_count() == 0  # released once the report was written
        assert not rt.switch.held and sys.getswitchinterval() == switch
        assert rt.hub.ws.binary_pushes  # the local replay server pushes bars as msgpack to the runtime
    finally:
        rt.stop()
    assert len(during) == hub.counts["bars_in"] > 100 and min(during) > 1000  # the start-up objects: frozen
    assert gc.get_freeze_count() == 0 and gc.get_threshold() == thresholds and gc.isenabled() == enabled
    # the router in this process gets the GIL within RUN_SWITCH_INTERVAL while bars flow, then as before
    assert switch_during == {min(switch, RUN_SWITCH_INTERVAL)} and sys.getswitchinterval() == switch
    assert (tmp_path / "report" / "latest" / "report.html").exists()


def test_a_run_keeps_what_the_process_froze_frozen(thawed: None, ipc_dir: str, tmp_path: Any) -> None:
    """The ``aitrados`` command freezes its objects before the run (to skip collections at exit): they stay."""
    s = bus_settings(ipc_dir, **PATIENT_HEARTBEATS)
    s.marketdata = MarketDataSettings(provider="replay", replay_symbols=SYMS,
                                      replay_start=dt.datetime(2018, 3, 5, 14, 30, tzinfo=dt.timezone.utc),
                                      replay_days=0.05, replay_history_days=0.05, replay_bundled=False)
    s.trading.report_dir = str(tmp_path / "report")
    mine = ["the process's own"]
    gc.freeze()
    rt = Runtime(s, plugins=[], strategies=[Looker()]).start()
    try:
        assert rt.wait_replay(90), "the replay did not end"
    finally:
        rt.stop()
    assert frozen(mine) and gc.get_freeze_count() > 0


def test_the_switch_interval_is_short_while_any_run_holds_it_and_restored_by_the_last() -> None:
    from aitrados.gil import RunSwitchInterval

    before = sys.getswitchinterval()
    sys.setswitchinterval(0.004)
    try:
        a, b = RunSwitchInterval(), RunSwitchInterval()
        a.hold()
        a.hold()  # idempotent
        assert sys.getswitchinterval() == RUN_SWITCH_INTERVAL
        b.hold()
        a.release()
        assert sys.getswitchinterval() == RUN_SWITCH_INTERVAL  # b still runs
        b.release()
        b.release()  # idempotent
        assert sys.getswitchinterval() == 0.004
    finally:
        sys.setswitchinterval(before)
