"""The whole loop in a real runtime: replay -> chart flow -> strategy -> risk -> paper broker -> bus.

Fills are checked against an independent pandas computation over the bars the bus delivered.
"""

from __future__ import annotations

import gc
import sys
import threading
import time
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from aitrados.bus import protocol as P
from aitrados.bus.errors import BadRequestError, UnauthorizedError
from aitrados.runtime import Runtime
from aitrados_strategies.sma_cross import SmaCross

from conftest import PATIENT_HEARTBEATS, bus_settings, joined_subscriber, wait_for_service

pytestmark = pytest.mark.timeout(120)
SYM = "CRYPTO:GLOBAL:BTCUSD"


def make_runtime(ipc_dir: str, report_dir: str, bus: dict | None = None, *, dashboard: int | None = None,
                 blocking: bool = False, **trading: object) -> Runtime:
    s = bus_settings(ipc_dir, **{**PATIENT_HEARTBEATS, **(bus or {})})
    md = s.marketdata
    md.provider = "replay"
    md.replay_symbols = [SYM]
    md.replay_days = 0.5  # 720 one-minute bars
    md.replay_history_days = 0.05
    s.trading.report_dir = report_dir
    for k, v in trading.items():
        setattr(s.trading.broker, k, v)
    strat = SmaCross(full_symbol=SYM, interval="1M", fast=5, slow=20, quantity=2.0)
    strat.blocking = blocking  # True: the runtime runs the engine in a worker thread, awaited per event
    return Runtime(s, plugins=[], strategies=[strat], start_clock=False, dashboard=dashboard).start()


def run_to_end(rt: Runtime, prefixes: list[str]) -> list:
    sub = joined_subscriber(rt.mw, prefixes)
    rt.start_replay()
    out = []
    while True:
        m = sub.recv(timeout=30)
        assert m is not None, "the replay stalled"
        out.append(m)
        if m.topic == "replay.end":
            break
    assert rt.wait_replay(30), "the runtime did not finish after the replay"
    assert sub.stats.missed == 0
    return out


def pandas_fills(bars: list[dict], fast: int, slow: int, qty: float) -> list[tuple[str, str, float, float]]:
    """Independent oracle: long qty from a close where SMA(fast) crossed above SMA(slow) until one where
    it crossed below, traded at the next open."""
    df = pd.DataFrame(bars)
    f = df["close"].rolling(fast).mean()
    s = df["close"].rolling(slow).mean()
    up = (f.shift() < s.shift()) & (f > s)
    down = (f.shift() > s.shift()) & (f < s)
    want = pd.Series(np.where(up, qty, np.where(down, 0.0, np.nan))).ffill().to_numpy()  # NaN before the first cross
    fills, pos = [], 0.0
    for i in range(len(df) - 1):
        if np.isnan(want[i]) or want[i] == pos:
            continue
        nxt = df.iloc[i + 1]
        fills.append((nxt["datetime"].isoformat(), "buy" if want[i] > pos else "sell", abs(want[i] - pos), nxt["open"]))
        pos = want[i]
    return fills


def test_replay_trades_like_the_pandas_oracle_and_publishes_events(ipc_dir: str, tmp_path) -> None:
    switch = sys.getswitchinterval()
    rt = make_runtime(ipc_dir, str(tmp_path / "report"))
    try:
        msgs = run_to_end(rt, ["ohlc.", "order.", "fill.", "position.", "replay."])
        bars = [m.data for m in msgs if m.topic == f"ohlc.{SYM}.1M" and m.data["closed"]]
        fills = [m.data for m in msgs if m.topic.startswith("fill.")]
        assert len(bars) == 720 and len(fills) >= 4
        expected = pandas_fills(bars, 5, 20, 2.0)
        got = [(f["datetime"].isoformat(), f["side"], f["quantity"], f["price"]) for f in fills]
        assert got == expected
        assert any(m.topic.startswith("order.") for m in msgs) and any(m.topic.startswith("position.") for m in msgs)
        c = rt.mw.rpc_client(timeout=10)
        acct = c.call("trading", "account")
        assert acct["equity"] == pytest.approx(rt.trading.engine.broker.equity())
        rep = c.call("trading", "report")
        assert rep["trades"] >= 2 and "total return" in rep["summary"]
        latest = tmp_path / "report" / "latest"  # each run in its own folder, `latest` pointing at it
        assert latest.is_symlink() and latest.resolve().parent == (tmp_path / "report").resolve()
        assert latest.resolve().name.startswith("run-") and latest.resolve() == rt.report_paths["folder"].resolve()
        files = sorted(p.name for p in latest.iterdir())
        assert files == ["equity.csv", "equity.png", "metrics.json", "report.html", "summary.txt", "trades.csv"]
        assert (latest / "equity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        # writing the report freezes and pauses the collector and shortens the GIL's switch
        # interval; all three are back as they were once it is written
        assert gc.isenabled() and gc.get_freeze_count() == 0 and sys.getswitchinterval() == switch
    finally:
        rt.stop()


def test_kill_switch_pauses_orders_at_run_time(ipc_dir: str, tmp_path) -> None:
    rt = make_runtime(ipc_dir, str(tmp_path / "report"))
    try:
        anyone = rt.mw.rpc_client(timeout=10)
        with pytest.raises(UnauthorizedError, match="operator token"):
            anyone.call("trading", "trip", reason="not an operator")
        assert anyone.call("trading", "risk_state")["kill_switch"] is False  # reads stay open
        c = rt.mw.rpc_client(timeout=10, role="operator")
        state = c.call("trading", "trip", reason="operator test")
        assert state["kill_switch"] is True
        msgs = run_to_end(rt, ["order.", "fill.", "replay."])
        rejected = [m.data for m in msgs if m.topic.startswith("order.rejected")]
        assert rejected and all("operator test" in r["reason"] for r in rejected)
        assert not [m for m in msgs if m.topic.startswith("fill.")]
        with pytest.raises(UnauthorizedError):
            anyone.call("trading", "reset")
        assert c.call("trading", "reset")["kill_switch"] is False
        assert rt.failure is None  # nothing crashed
    finally:
        rt.stop()


def test_replay_is_deterministic(ipc_dir: str, tmp_path) -> None:
    outputs = []
    for i in range(2):
        rt = make_runtime(ipc_dir, str(tmp_path / f"r{i}"), commission_bps=1.0, slippage_bps=2.0)
        try:
            run_to_end(rt, ["replay."])
        finally:
            rt.stop()
        latest = tmp_path / f"r{i}" / "latest"
        outputs.append(((latest / "trades.csv").read_text(), (latest / "metrics.json").read_text()))
    assert outputs[0] == outputs[1] and outputs[0][0].count("\n") > 2


def test_offloaded_engine_publishes_the_same_messages_as_the_inline_one(ipc_dir: str, tmp_path) -> None:
    """A blocking strategy makes the trading runtime await the engine in a thread for every event (the
    hub's awaited path); the bus carries the same bars, orders and fills in the same order as when the
    engine runs inline, within the hub's one call per time step."""
    runs = []
    for blocking in (False, True):
        rt = make_runtime(ipc_dir, str(tmp_path / f"b{blocking}"), blocking=blocking)
        try:
            assert rt.trading.offload is blocking
            msgs = run_to_end(rt, ["ohlc.", "chart.", "order.", "fill.", "position.", "replay."])
        finally:
            rt.stop()
        runs.append([(m.topic, m.data) for m in msgs])
    assert runs[0] == runs[1] and sum(t.startswith("fill.") for t, _ in runs[0]) >= 4


def test_on_chart_reaches_in_process_strategies(ipc_dir: str, tmp_path) -> None:
    from aitrados.trading.strategy import Strategy

    class ChartWatcher(Strategy):
        name = "chart_watcher"
        symbols = (SYM,)
        intervals = ("5M",)

        def __init__(self) -> None:
            super().__init__()
            self.seen: list[tuple[str, str, int]] = []

        def on_chart(self, full_symbol, interval, window) -> None:  # noqa: ANN001
            self.seen.append((full_symbol, interval, window["seq"]))

    s = bus_settings(ipc_dir, **PATIENT_HEARTBEATS)
    s.marketdata.provider = "replay"
    s.marketdata.replay_symbols = [SYM]
    s.marketdata.replay_days = 0.05
    s.marketdata.replay_history_days = 0.05
    s.trading.report_dir = str(tmp_path / "report")
    watcher = ChartWatcher()
    rt = Runtime(s, plugins=[], strategies=[watcher], start_clock=False).start()
    try:
        msgs = run_to_end(rt, [f"chart.{SYM}.5M", "replay."])
        published = [m.data["seq"] for m in msgs if m.topic == f"chart.{SYM}.5M"]
        assert watcher.seen and [x[2] for x in watcher.seen] == published
        assert {x[:2] for x in watcher.seen} == {(SYM, "5M")}
    finally:
        rt.stop()


@pytest.fixture
def rt(ipc_dir: str, tmp_path) -> Iterator[Runtime]:
    """A started runtime (replay clock not started), stopped after the test."""
    r = make_runtime(ipc_dir, str(tmp_path / "report"))
    yield r
    r.stop()


def test_trading_roles_and_strategy_sessions(rt: Runtime) -> None:
    anyone = rt.mw.rpc_client(timeout=10)
    worker = rt.mw.rpc_client(timeout=10, role="service")
    with pytest.raises(UnauthorizedError, match="service token"):
        anyone.call("trading", "attach", strategy="ghost")  # no stalling ghosts: attach needs the token
    assert "ghost" not in rt.trading.remote
    mine = worker.call("trading", "attach", strategy="mine")
    theirs = worker.call("trading", "attach", strategy="theirs")
    assert set(mine) == {"step", "session"} and mine["session"] != theirs["session"]
    intent = {"full_symbol": SYM, "side": "buy", "quantity": 1.0, "client_id": "x1"}
    for method, params in (("submit", {"intent": intent}), ("cancel", {"client_id": "x1"}),
                           ("ack", {"step": 1}), ("detach", {})):
        with pytest.raises(UnauthorizedError, match="not attached by this caller"):
            anyone.call("trading", method, strategy="theirs", **params)  # no session
        with pytest.raises(UnauthorizedError):
            worker.call("trading", method, strategy="theirs", session=mine["session"], **params)
    assert not rt.trading.engine.broker.orders()  # nothing was submitted in another strategy's name
    worker.call("trading", "ack", strategy="mine", step=1, session=mine["session"])
    assert rt.trading.remote["mine"] == 1
    worker.call("trading", "detach", strategy="theirs", session=theirs["session"])
    assert "theirs" not in rt.trading.remote
    rt.mw.rpc_client(timeout=10, role="operator").call("trading", "detach", strategy="mine")
    assert rt.trading.remote == {}


def test_malformed_requests_to_core_services_are_answered_and_they_keep_serving(rt: Runtime) -> None:
    c = rt.mw.rpc_client(timeout=10)
    # `runtime` is served last and its worker's READY may still be on its way to the router: the
    # snapshot is taken once every service of the run is listed
    wait_for_service(c, "runtime", timeout=30)
    before = c.call("middleware", "services")
    for name, method in ((b"trading", "risk_state"), (b"chart", "list"), (b"mtf", "list_groups")):
        with pytest.raises(BadRequestError):
            c.call_raw(name, P.encode({"method": [1]}))
        with pytest.raises(BadRequestError):
            c.call_raw(name, P.encode({"method": method, "params": {"no_such_argument": 1}}))
    assert c.call("trading", "risk_state")["kill_switch"] is False and c.call("chart", "list")
    after = c.call("middleware", "services")
    assert {n: [w["id"] for w in i["workers"]] for n, i in after.items()} == \
        {n: [w["id"] for w in i["workers"]] for n, i in before.items()}


def test_service_heartbeats_do_not_wait_for_a_busy_runtime_loop(ipc_dir: str, tmp_path) -> None:
    # heartbeats slow enough that a loaded machine alone never costs a worker its registration
    rt = make_runtime(ipc_dir, str(tmp_path / "report"), bus={"heartbeat_interval": 0.5, "heartbeat_liveness": 3})
    try:
        check_heartbeats_while_the_loop_is_stuck(rt)
    finally:
        rt.stop()


def check_heartbeats_while_the_loop_is_stuck(rt: Runtime) -> None:
    c = rt.mw.rpc_client(timeout=30)
    wait_for_service(c, "runtime", timeout=30)  # served last: its READY may still be on its way
    before = {n: [w["id"] for w in i["workers"]] for n, i in c.call("middleware", "services").items()}
    assert {"trading", "chart", "mtf"} <= set(before)
    liveness = rt.settings.bus.heartbeat_interval * rt.settings.bus.heartbeat_liveness
    # the data loop is stuck for several heartbeat lifetimes (as under a full-speed replay)
    rt._loop.call_soon_threadsafe(time.sleep, liveness * 2)  # type: ignore[union-attr]
    assert c.call("trading", "risk_state")["kill_switch"] is False  # waits for the loop, then answers
    after = {n: [w["id"] for w in i["workers"]] for n, i in c.call("middleware", "services").items()}
    assert after == before  # no service was dropped or re-registered
    assert c.call("middleware", "stats")["rpc"]["workers_lost"] == 0
