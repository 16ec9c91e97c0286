"""An isolated plugin's strategy trades from its worker process over RPC, in lock-step with the replay.

A real middleware, a real worker process (``--isolate ticker``) and, as the ``trading`` service,
a small recorder written here that implements the service's contract (attach, ack, submit,
position, ...) and fills every order at once. The test publishes bars, snapshots, news and
calendar events plus ``replay.step`` the way the market-data hub does, waits for each step's
ack like the replay does, and checks what the strategy submitted, in which order, and what
it knew (its tags carry the record types it got and the positions it read over RPC).
The last test runs the real `aitrados run` runtime (its `trading` service and market-data
hub): an isolated strategy gives exactly the orders, fills and equity of the same strategy
in-process.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from fixtures.plugin_env import install

from aitrados.bus import Service
from aitrados.pluginhost.host import PluginHost
from aitrados.marketdata.align import Snapshot
from aitrados.marketdata.models import Bar, CalendarEvent, NewsItem
from aitrados.trading.orders import Account, Fill, Order, OrderIntent
from aitrados.trading.remote import record_of, topics_for
from aitrados.trading.strategy import StrategyNeeds
from aitrados_strategies.sma_cross import SmaCross

pytestmark = pytest.mark.timeout(90)

UTC = dt.timezone.utc
SPX, IXIC = "STOCK:US:SPX", "STOCK:US:IXIC"
T0 = dt.datetime(2024, 1, 2, 21, tzinfo=UTC)
FILL_TIME = dt.datetime(2030, 1, 1, tzinfo=UTC)


def day_bar(k: int, symbol: str = SPX, closed: bool = True) -> Bar:
    close = T0 + dt.timedelta(days=k)
    return Bar(symbol, "DAY", close - dt.timedelta(hours=6, minutes=30), close, 100 + k, 101 + k, 99 + k,
               100.0 + k, 1000.0, closed=closed)


def wait_for(pred: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


def ready_publisher(mw: Any) -> Any:
    """A publisher whose path through the router is proven: a probe of its own came back."""
    pub = mw.publisher()
    with mw.subscriber(["test.probe"]) as sub:
        for _ in range(200):
            pub.publish("test.probe", {})
            if sub.recv(timeout=0.05) is not None:
                return pub
    raise AssertionError("the publisher never reached the router")


class RecordingTrading(Service):
    """The ``trading`` service contract, recording every call; each order fills at once at 100."""

    name = "trading"

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.log: list[tuple[Any, ...]] = []
        self.pos: dict[tuple[str, str], float] = {}
        self.next_id = 0

    def _rec(self, *entry: Any) -> None:
        with self.lock:
            self.log.append(entry)

    def entries(self, *kinds: str) -> list[tuple[Any, ...]]:
        with self.lock:
            return [e for e in self.log if e[0] in kinds]

    def attach(self, strategy: str) -> dict[str, int]:
        self._rec("attach", strategy)
        return {"step": 0}

    def detach(self, strategy: str) -> None:
        self._rec("detach", strategy)

    def ack(self, strategy: str, step: int) -> None:
        self._rec("ack", strategy, step)

    def submit(self, strategy: str, intent: dict[str, Any]) -> list[dict[str, Any]]:
        it = msgspec.convert(intent, OrderIntent)
        it.validate()
        key = (strategy, it.full_symbol)
        held = self.pos.get(key, 0.0)
        delta = it.target - held if it.target is not None else (it.quantity if it.side == "buy" else -it.quantity)
        self._rec("submit", strategy, it)
        if delta == 0:
            return []
        self.next_id += 1
        side = "buy" if delta > 0 else "sell"
        order = Order(self.next_id, it.full_symbol, side, abs(delta), it.order_type, FILL_TIME, strategy=strategy,
                      client_id=it.client_id, tag=it.tag, status="filled", filled_at=FILL_TIME, fill_price=100.0)
        fill = Fill(self.next_id, it.full_symbol, side, abs(delta), 100.0, 0.0, FILL_TIME, strategy, it.client_id)
        self.pos[key] = held + delta
        return [{"topic": f"order.filled.{it.full_symbol}", "payload": msgspec.to_builtins(order)},
                {"topic": f"fill.{it.full_symbol}", "payload": msgspec.to_builtins(fill)}]

    def cancel(self, strategy: str, client_id: str) -> list[dict[str, Any]]:
        self._rec("cancel", strategy, client_id)
        return []

    def position(self, strategy: str, full_symbol: str) -> float:
        self._rec("position", strategy, full_symbol)
        return self.pos.get((strategy, full_symbol), 0.0)

    def positions(self) -> list[dict[str, Any]]:
        return [{"full_symbol": s, "quantity": q} for (_, s), q in self.pos.items()]

    def orders(self) -> list[dict[str, Any]]:
        return []

    def account(self) -> dict[str, Any]:
        return msgspec.to_builtins(Account(1e5, 1e5, 1e5, 0, 0, 0, 0))


class RecordingChart(Service):
    """The hub's ``chart.add``, recording into the trading recorder's log."""

    name = "chart"

    def __init__(self, rec: RecordingTrading) -> None:
        self.rec = rec

    def add(self, full_symbol: str, interval: str, size: int | None = None) -> dict[str, Any]:
        self.rec._rec("chart.add", full_symbol, interval, size)
        return {"full_symbol": full_symbol, "interval": interval}


class RecordingMtf(Service):
    """The hub's ``mtf.add_group``, recording into the trading recorder's log."""

    name = "mtf"

    def __init__(self, rec: RecordingTrading) -> None:
        self.rec = rec

    def add_group(self, name: str, members: dict[str, list[str]], size: int | None = None) -> dict[str, Any]:
        self.rec._rec("mtf.add_group", name, members)
        return {"group": name, "members": members}


def test_topics_follow_the_strategies_needs() -> None:
    from aitrados_testplugins.ticker import Ticker

    assert topics_for([Ticker(SPX, "DAY", 1.0, "g1")]) == [
        "replay.", f"ohlc.{SPX}.DAY", "mtf.g1", "news.", "calendar.", "order.", "fill."]
    # the crossover overrides only on_bar and on_calendar_event (for standing aside)
    assert topics_for([SmaCross(IXIC, "WEEK")]) == ["replay.", f"ohlc.{IXIC}.WEEK", "calendar."]


def test_order_events_become_trading_records() -> None:
    order = Order(7, SPX, "buy", 2.0, "market", T0, strategy="s")
    assert record_of("order.accepted.X", msgspec.to_builtins(order)) == order
    with pytest.raises(ValueError, match="order.accepted.X: order event: payload is not a Order"):
        record_of("order.accepted.X", {"id": "seven"})


def expected_run(steps: int, qty: float) -> list[tuple[Any, ...]]:
    """What the ticker must submit and ack, computed from its rule and the recorder's fills.

    Each submit is filled at once (one Order and one Fill back); at step 2 the test also
    publishes a copy of the first fill (must not count), a fill of another strategy (must not
    count) and a new fill of the ticker (counts).
    """
    out: list[tuple[Any, ...]] = []
    pos, orders, fills = 0.0, 0, 0

    def submit(tag: str, delta: float) -> None:
        nonlocal pos, orders, fills
        out.append(("submit", tag))
        pos += delta
        orders += 1
        fills += 1

    for k in range(1, steps + 1):
        submit(f"bar;Bar;close={100 + k:g};pos={pos:g};orders={orders};fills={fills}", qty)
        if k == 2:
            fills += 1
        if k == 3:
            submit(f"mtf;Snapshot;tick_group;close={100 + k:g}", -qty)
            submit("news;NewsItem;Fed holds rates", -qty)
            submit("calendar;CalendarEvent;CPI", -qty)
        out.append(("ack", k))
    out.append(("submit", f"stop;orders={orders};fills={fills}"))
    return out


def test_an_isolated_strategy_trades_over_rpc_and_acks_every_step(tmp_path, monkeypatch, mw) -> None:
    install(tmp_path, monkeypatch, {"ticker": "aitrados_testplugins.ticker"})
    svc = RecordingTrading()
    for service in (svc, RecordingChart(svc), RecordingMtf(svc)):
        mw.serve(service)
    mw.settings.plugins["ticker"] = {"quantity": 2}
    host = PluginHost(mw.settings, names=["ticker"], isolate=["ticker"]).start(mw)
    steps = 5
    try:
        worker = host.supervisor.workers["ticker"]
        assert worker.status == "running", worker.reason
        assert host.strategies() == []  # not in this process: the worker runs it and says what it needs
        assert host.remote_strategies() == [("ticker", "ticker", StrategyNeeds(
            symbols=(SPX,), intervals=("DAY",), groups={"tick_group": {SPX: ["DAY"]}}))]
        # attached first (so no step is missed), then the hub is asked for the strategy's data
        assert wait_for(lambda: len(svc.entries("attach", "chart.add", "mtf.add_group")) == 3)
        assert svc.entries("attach", "chart.add", "mtf.add_group") == [
            ("attach", "ticker"), ("chart.add", SPX, "DAY", None), ("mtf.add_group", "tick_group", {SPX: ["DAY"]})]
        pub = ready_publisher(mw)
        for k in range(1, steps + 1):
            bar = day_bar(k)
            pub.publish(f"ohlc.{SPX}.DAY", bar)
            pub.publish(f"ohlc.{SPX}.DAY", day_bar(k + 1, closed=False))  # forming: ignored
            pub.publish(f"ohlc.{IXIC}.DAY", day_bar(k, IXIC))  # not the strategy's symbol
            if k == 2:
                first_fill = svc.entries("submit")[0][2]
                pub.publish(f"fill.{SPX}", Fill(1, SPX, "buy", 2.0, 100.0, 0.0, FILL_TIME, "ticker",
                                                first_fill.client_id))  # the copy of a reply: skipped
                pub.publish(f"fill.{SPX}", Fill(99, SPX, "buy", 1.0, 100.0, 0.0, FILL_TIME, "other", "other-1"))
                pub.publish(f"fill.{SPX}", Fill(98, SPX, "sell", 1.0, 100.0, 0.0, FILL_TIME, "ticker", "x"))
            if k == 3:
                snap = Snapshot("tick_group", bar.close_datetime, {(SPX, "DAY"): bar}, ((SPX, "DAY"),))
                pub.publish("mtf.tick_group", snap.to_record())
                pub.publish("mtf.other_group", Snapshot("other_group", bar.close_datetime, {(SPX, "DAY"): bar},
                                                        ((SPX, "DAY"),)).to_record())
                pub.publish(f"news.{SPX}", NewsItem(bar.close_datetime, "Fed holds rates", "", "wire", SPX))
                pub.publish("calendar.US.CPI", CalendarEvent("US", "CPI", "Consumer prices", bar.close_datetime,
                                                             "high", 3))
            pub.publish("replay.step", {"step": k, "time": bar.close_datetime})
            # lock-step, as the replay: the next step is published only after this one's ack
            assert wait_for(lambda: ("ack", "ticker", k) in svc.entries("ack")), f"no ack of step {k}"
        pub.publish("replay.end", {"clock": day_bar(steps).close_datetime, "bars": steps})
        assert wait_for(lambda: any(e[2].tag.startswith("stop;") for e in svc.entries("submit"))), "no on_stop order"
        pub.close()
    finally:
        host.stop()
    assert svc.entries("detach") == [("detach", "ticker")]

    got = [("submit", e[2].tag) if e[0] == "submit" else ("ack", e[2]) for e in svc.entries("submit", "ack")]
    assert got == expected_run(steps, 2.0)
    intents = [e[2] for e in svc.entries("submit")]
    assert [i.client_id for i in intents] == [f"ticker-{n}" for n in range(1, len(intents) + 1)]
    assert all(i.strategy == "ticker" for i in intents)
    assert intents[0].interval == "DAY" and intents[-1].target == 0.0  # on_stop: target_position(.., 0)
    # positions were read over RPC, once per closed bar of the strategy's symbol
    assert svc.entries("position") == [("position", "ticker", SPX)] * steps
    assert svc.pos[("ticker", SPX)] == 0.0


def test_strategies_attach_when_the_trading_service_comes_later(tmp_path, monkeypatch, mw, capfd) -> None:
    install(tmp_path, monkeypatch, {"ticker": "aitrados_testplugins.ticker"})
    monkeypatch.setenv("AITRADOS_PLUGIN_HOST__WORKER_START_TIMEOUT", "0.5")  # the worker's warning delay
    host = PluginHost(mw.settings, names=["ticker"], isolate=["ticker"]).start(mw)
    try:
        w = host.supervisor.workers["ticker"]
        assert w.status == "running", w.reason  # ready without a trading service: it may come later
        seen: list[str] = []

        def warned() -> bool:
            seen.append(capfd.readouterr().err)
            return "no 'trading' service to attach to after 0.5s" in "".join(seen)

        assert wait_for(warned, 15)
        svc = RecordingTrading()
        mw.serve(svc)  # what `aitrados run` does once its trading loop is up
        assert wait_for(lambda: svc.entries("attach") == [("attach", "ticker")], 15)
        pub = ready_publisher(mw)
        pub.publish(f"ohlc.{SPX}.DAY", day_bar(1))
        pub.publish("replay.step", {"step": 1, "time": day_bar(1).close_datetime})
        assert wait_for(lambda: ("ack", "ticker", 1) in svc.entries("ack"))
        assert [e[2].tag for e in svc.entries("submit")] == ["bar;Bar;close=101;pos=0;orders=0;fills=0"]
        pub.close()
        assert w.starts == 1
    finally:
        host.stop()


# ------------------------------------------------------------------ end to end with `aitrados run`'s runtime
def sma_replay_settings(ipc_dir: str, report_dir: str, sym: str = "CRYPTO:GLOBAL:BTCUSD") -> Any:
    """Settings replaying 720 one-minute bars of *sym* with the sma_cross plugin configured (5/20, 2 units)."""
    from conftest import PATIENT_HEARTBEATS, bus_settings

    s = bus_settings(ipc_dir, **PATIENT_HEARTBEATS)
    md = s.marketdata
    md.provider, md.replay_symbols, md.replay_days, md.replay_history_days = "replay", [sym], 0.5, 0.05
    s.trading.report_dir = report_dir
    s.plugins["sma_cross"] = {"full_symbol": sym, "interval": "1M", "fast": 5, "slow": 20, "quantity": 2}
    return s


def replay_orders(ipc_dir: str, tmp_path: Any, isolate: bool) -> tuple[list[tuple[Any, ...]], float]:
    """Replay 720 one-minute bars through the real runtime with sma_cross (isolated or not) beside an
    in-process RSI strategy; returns every order and the final equity."""
    from aitrados.runtime import Runtime
    from aitrados_strategies.rsi_reversion import RsiReversion
    from conftest import joined_subscriber

    sym = "CRYPTO:GLOBAL:BTCUSD"
    s = sma_replay_settings(ipc_dir, str(tmp_path / f"report-{isolate}"), sym)
    rt = Runtime(s, plugins=["sma_cross"], isolate=["sma_cross"] if isolate else [],
                 strategies=[RsiReversion(sym, "1M", quantity=1)], start_clock=False).start()
    try:
        if isolate:
            assert [n for _, n, _ in rt.host.remote_strategies()] == ["sma_cross"]
            assert wait_for(lambda: "sma_cross" in rt.trading.remote, 20), "the isolated strategy never attached"
        with joined_subscriber(rt.mw, ["replay.end"]) as sub:
            rt.start_replay()
            assert sub.recv(timeout=60) is not None, "the replay stalled"
        assert rt.wait_replay(30)
        broker = rt.trading.engine.broker
        orders = sorted((o.strategy, o.client_id, o.side, o.quantity, o.status, o.created_at, o.filled_at,
                         o.fill_price) for o in broker.orders())
        return orders, broker.equity()
    finally:
        rt.stop()


@pytest.mark.timeout(240)
def test_an_isolated_strategy_trades_exactly_like_in_process_in_a_real_replay(ipc_dir, tmp_path) -> None:
    """Also under a CPU burner on every core: heartbeats and step acks must not fail, nothing detaches."""
    local, local_equity = replay_orders(ipc_dir, tmp_path, isolate=False)
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 2)]
    try:
        remote, remote_equity = replay_orders(ipc_dir, tmp_path, isolate=True)
    finally:
        for b in burners:
            b.kill()
            b.wait()
    assert {o[0] for o in remote} == {"sma_cross", "rsi_reversion"}
    assert sum(o[0] == "sma_cross" for o in remote) >= 10
    assert remote == local and remote_equity == local_equity


class ServiceUnavailable(Exception):
    """Raised by a service method, it answers with the same error type the router sends for a lost worker."""


class FlakyAcks(RecordingTrading):
    """The trading recorder whose first ``refusals`` acks answer ServiceUnavailable."""

    def __init__(self, refusals: int) -> None:
        super().__init__()
        self.refusals = refusals

    def ack(self, strategy: str, step: int) -> None:
        if self.refusals > 0:
            self.refusals -= 1
            self._rec("refused", strategy, step)
            raise ServiceUnavailable("the worker serving this request left")
        super().ack(strategy, step)


@pytest.mark.parametrize("refusals,acked", [(2, True), (10, False)])
def test_an_ack_that_meets_service_unavailable_is_sent_again(mw, refusals: int, acked: bool) -> None:
    from aitrados.trading.remote import RemoteStrategyRunner
    from aitrados_testplugins.ticker import Ticker

    svc = FlakyAcks(refusals)
    mw.serve(svc)
    runner = RemoteStrategyRunner([Ticker(SPX, "DAY", 1.0, "g1")], mw.endpoints("inproc"), mw.settings.bus,
                                  context=mw.context, timeout=5.0).start()
    try:
        assert runner.ready.wait(30), "never attached"
        pub = ready_publisher(mw)
        pub.publish("replay.step", {"step": 1, "time": T0})
        if acked:  # refused twice, then the third attempt gets through
            # the runner records the step once the ack's reply is back, a moment after the service saw it
            assert wait_for(lambda: ("ack", "ticker", 1) in svc.entries("ack") and runner.step == 1, 30)
            assert svc.entries("refused") == [("refused", "ticker", 1)] * 2
        else:  # a bounded number of attempts, then the failure is reported, not swallowed
            assert wait_for(lambda: any("replay.step" in e for e in runner.errors), 30)
            assert len(svc.entries("refused")) == 4 and svc.entries("ack") == [] and runner.step is None
            assert "ServiceUnavailableError" in runner.errors[-1]
        pub.close()
    finally:
        runner.stop()
