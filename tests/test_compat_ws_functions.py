"""The official WebSocketClient functions through the compat gateway: subscribe, unsubscribe,
resubscribe and topics act on the runtime's one WS session (replay server, real WebSocket), and an
official AsyncSubscriber hears the bars of what it subscribed, and stops hearing them after it
unsubscribed."""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import threading
from typing import Any

import pytest

pytest.importorskip("aitrados_api")

from aitrados.runtime import Runtime

from compat_peers import compat_runtime_settings, wait_for

pytestmark = pytest.mark.timeout(180)
BTC, ETH = "CRYPTO:GLOBAL:BTCUSD", "CRYPTO:GLOBAL:ETHUSD"


@pytest.fixture(scope="module")
def rt():
    d = tempfile.mkdtemp(prefix="atw-", dir="/tmp")
    # 1440 one-minute bars a symbol at one a second: the replay outlasts the test even on a loaded machine
    s, _ = compat_runtime_settings(d, [BTC, ETH], replay_days=1.0, replay_speed=60)
    r = Runtime(s, plugins=["aitrados_compat"], start_clock=False).start()
    yield r
    r.stop()
    shutil.rmtree(d, ignore_errors=True)


class Bars:
    """What an official AsyncSubscriber's ``on_ohlc`` received: one record per message, thread-safe."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.records: list[dict[str, Any]] = []

    def add(self, msg: Any) -> None:
        with self.lock:
            self.records.extend(msg if isinstance(msg, list) else [msg])

    def of(self, symbol: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.records if r.get("symbol") == symbol and r.get("interval") == "1M"]


def close_time(rec: dict[str, Any]) -> dt.datetime:
    return dt.datetime.fromisoformat(rec["close_datetime"].replace("Z", "+00:00"))


def topics(kind: str) -> set[str]:
    from aitrados_api.universal_interface.rpc_request import rpc_request

    res = rpc_request("aitrados_api", "a_get_all_subscribed_topics", timeout=20)
    assert res["status"] == "ok", res
    return set(res["result"].get(kind) or [])


def test_official_ws_functions_drive_the_one_ws_session(rt: Runtime) -> None:
    from aitrados_api.trade_middleware.subscriber import AsyncSubscriber
    from aitrados_api.universal_interface.rpc_request import rpc_request

    bars = Bars()

    class Strategy(AsyncSubscriber):
        async def on_ohlc(self, msg: Any) -> None:
            bars.add(msg)

    sub = Strategy()
    sub.subscribe_topics("on_ohlc")
    sub.run(is_thread=True)

    # official answers: nothing to do -> "subscribed"; sent -> "subscribing"; bad input -> ErrorResponse
    assert rpc_request("aitrados_api", "a_subscribe_ohlc_1m", timeout=20)["result"] == "subscribed"
    bad = rpc_request("aitrados_api", "a_subscribe_ohlc_1m", 123, timeout=20)
    assert bad["status"] == "error" and "topics" in bad["message"]
    res = rpc_request("aitrados_api", "a_subscribe_ohlc_1m", BTC, ETH, timeout=20)
    assert res["status"] == "ok" and res["result"] == "subscribing", res
    wait_for(lambda: {BTC, ETH} <= topics("ohlc"), 30, "the server confirming both subscriptions")
    native = rt.mw.rpc_client(timeout=20)
    assert {BTC, ETH} <= set(native.call("chart", "subscriptions")["ohlc"])  # the native API is the same session
    assert native.call("chart", "list") == []  # no chart window: the bars come from the stream subscription

    rt.start_replay()
    wait_for(lambda: bars.of("ETHUSD") and bars.of("BTCUSD"), 60, "on_ohlc bars of both subscribed symbols")
    rec = bars.of("ETHUSD")[0]
    assert {"open", "high", "low", "close", "volume", "datetime", "close_datetime"} <= set(rec)

    # unsubscribe ETH: no ETH bar later than the data time of the unsubscription is delivered,
    # while BTC bars keep coming well past it
    res = rpc_request("aitrados_api", "a_unsubscribe_ohlc_1m", ETH, timeout=20)
    assert res["status"] == "ok" and res["result"] == "unsubscribing", res
    t0 = rt.hub.step_time
    assert t0 is not None
    wait_for(lambda: ETH not in topics("ohlc") and BTC in topics("ohlc"), 30, "the server dropping ETH only")
    wait_for(lambda: any(close_time(r) > t0 + dt.timedelta(minutes=5) for r in bars.of("BTCUSD")), 60,
             "BTC bars five data minutes past the unsubscription")
    late = [r for r in bars.of("ETHUSD") if close_time(r) > t0]
    assert late == [], f"ETH bars after the unsubscription: {late[:3]}"

    # a dropped WebSocket: the session comes back with its subscriptions, BTC bars flow again,
    # and the official resubscribe_all is answered (result None) and keeps the same topics
    before = native.call("chart", "stats")["reconnects"]
    assert rt.replay.call(rt.replay.server.drop_connections) >= 1
    wait_for(lambda: native.call("chart", "stats")["reconnects"] > before, 60, "the WS session reconnecting")
    t1 = rt.hub.step_time
    wait_for(lambda: any(close_time(r) > t1 + dt.timedelta(minutes=2) for r in bars.of("BTCUSD")), 60,
             "BTC bars after the reconnect")
    res = rpc_request("aitrados_api", "resubscribe_all", timeout=20)
    assert res["status"] == "ok" and res["result"] is None, res
    wait_for(lambda: BTC in topics("ohlc") and ETH not in topics("ohlc"), 30, "the same topics after resubscribe_all")
    # subscribe ETH again after the reconnect: its bars come back
    t2 = rt.hub.step_time
    assert rpc_request("aitrados_api", "a_subscribe_ohlc_1m", ETH, timeout=20)["result"] == "subscribing"
    wait_for(lambda: any(close_time(r) > t2 for r in bars.of("ETHUSD")), 60, "ETH bars after subscribing again")


def test_news_and_event_subscriptions_list_and_drop(rt: Runtime) -> None:
    from aitrados_api.universal_interface.rpc_request import rpc_request

    started = topics("news")  # the runtime's own news subscriptions stay whatever the caller unsubscribes
    assert rpc_request("aitrados_api", "a_subscribe_news", "STOCK:US:AAPL", timeout=20)["result"] == "subscribing"
    wait_for(lambda: "STOCK:US:AAPL" in topics("news"), 30, "news topic confirmed")
    assert rpc_request("aitrados_api", "a_subscribe_event", "US:CPI", timeout=20)["result"] == "subscribing"
    wait_for(lambda: "US:CPI" in topics("event"), 30, "event topic confirmed")
    assert rpc_request("aitrados_api", "a_unsubscribe_news", "STOCK:US:AAPL", timeout=20)["result"] == "unsubscribing"
    assert rpc_request("aitrados_api", "a_unsubscribe_event", "US:CPI", timeout=20)["result"] == "unsubscribing"
    wait_for(lambda: "STOCK:US:AAPL" not in topics("news") and "US:CPI" not in topics("event"), 30,
             "news and event topics dropped")
    assert started <= topics("news")
    kw = rpc_request("aitrados_api", "a_unsubscribe_news", topics=["X"], timeout=20)
    assert kw["status"] == "error" and "positional" in kw["message"]


def test_unsubscribing_keeps_what_a_chart_window_needs(rt: Runtime) -> None:
    """One session for everyone: a caller's unsubscribe does not cut a chart's stream."""
    from aitrados_api.universal_interface.rpc_request import rpc_request

    sym = "CRYPTO:GLOBAL:ETHUSD"
    native = rt.mw.rpc_client(timeout=20)
    native.call("chart", "add", full_symbol=sym, interval="5M")
    wait_for(lambda: sym in topics("ohlc"), 30, "the chart's own subscription")
    assert rpc_request("aitrados_api", "a_subscribe_ohlc_1m", sym, timeout=20)["result"] == "subscribing"
    assert rpc_request("aitrados_api", "a_unsubscribe_ohlc_1m", sym, timeout=20)["result"] == "unsubscribing"
    assert native.call("chart", "unsubscribe", kind="ohlc", topics=[sym]) == []  # nothing left to drop
    assert sym in topics("ohlc")
    assert native.call("chart", "remove", full_symbol=sym, interval="5M") is True
