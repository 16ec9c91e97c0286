"""WebSocket side: the replay server's /ws endpoint through the real client (and raw websockets).

Oracle: the server's store (what it is supposed to push) read directly in the same process.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from loguru import logger
from websockets.asyncio.client import connect

from aitrados.marketdata.errors import AuthenticationError, MarketDataError
from aitrados.marketdata.http_client import AsyncAitradosHTTPClient
from aitrados.marketdata.models import Bar, CalendarEvent, NewsItem
from aitrados.marketdata.replay_server import ReplayServer
from aitrados.marketdata.settings import MarketDataSettings
from aitrados.marketdata.ws_client import AitradosWSClient, ReplayEnd, ServerErrorMessage

pytestmark = pytest.mark.timeout(60)

KEY = "ws-test-key-0123456789"
SYMS = ["STOCK:US:AAPL", "CRYPTO:GLOBAL:BTCUSD", "CRYPTO:GLOBAL:ETHUSD", "FOREX:GLOBAL:EURUSD"]


def settings(tmp_path: Path, **over: Any) -> MarketDataSettings:
    news = [{"published_date": "2018-12-24T15:00:30+00:00", "title": "aapl one", "asset_name": "stock",
             "country_iso_code": "US", "symbol": "AAPL"},
            {"published_date": "2018-12-24T16:10:00Z", "title": "btc one", "asset_name": "crypto",
             "country_iso_code": "GLOBAL", "symbol": "BTCUSD"},
            {"published_date": "2018-12-24T17:00:00+00:00", "title": "aapl two", "asset_name": "stock",
             "country_iso_code": "US", "symbol": "AAPL"}]
    events = [{"country_iso_code": "US", "event_code": "CPI_YOY", "event_timestamp": "2018-12-24T15:30:00Z",
               "actual_value": 2.2, "impact": "high"},
              {"country_iso_code": "JP", "event_code": "BOJ_RATE", "event_timestamp": "2018-12-24T16:00:00Z"}]
    (tmp_path / "news.json").write_text(json.dumps(news))
    (tmp_path / "cal.json").write_text(json.dumps(events))
    cfg: dict[str, Any] = dict(replay_symbols=SYMS, replay_days=0.125, replay_history_days=1, replay_bundled=False,
                               replay_news_files=[str(tmp_path / "news.json")],
                               replay_calendar_files=[str(tmp_path / "cal.json")],
                               ws_reconnect_initial_backoff=0.05, ws_reconnect_max_backoff=0.2)
    cfg.update(over)
    return MarketDataSettings(**cfg)


def due(rec: Any) -> Any:
    if isinstance(rec, Bar):
        return rec.close_datetime
    if isinstance(rec, NewsItem):
        return rec.published_date
    if isinstance(rec, CalendarEvent):
        return rec.event_timestamp
    return rec.clock


async def recv_json(ws: Any) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), 10))


def test_authenticate_and_show_subscribe(tmp_path: Path) -> None:
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="DEBUG")

    async def run() -> None:
        async with ReplayServer(settings(tmp_path), secret_key=KEY, autostart="manual") as srv:
            with pytest.raises(AuthenticationError, match="authentication refused"):
                await AitradosWSClient(srv.ws_url, "not-the-key").start()
            errors: list[BaseException] = []
            c = AitradosWSClient(srv.ws_url + "/ws", KEY, on_error=errors.append, queue_records=True)
            await c.subscribe_ohlc("stock:US:AAPL")  # before start: sent after authentication
            await c.start()
            assert await c.wait_subscribed("ohlc") == ["STOCK:US:AAPL"]
            await c.subscribe_ohlc("CRYPTO:GLOBAL:*", "STOCK:US:NOPE")
            assert await c.wait_subscribed("ohlc") == ["CRYPTO:GLOBAL:*", "STOCK:US:AAPL"]  # full, sorted
            assert len(errors) == 1 and isinstance(errors[0], ServerErrorMessage)
            assert "STOCK:US:NOPE" in str(errors[0]) and "STOCK:US:AAPL" in str(errors[0])  # names what exists
            await c.unsubscribe("ohlc", ["stock:us:aapl"])
            assert await c.wait_subscribed("ohlc") == ["CRYPTO:GLOBAL:*"]
            await c.subscribe_event("US:*:REALTIME")
            assert await c.wait_subscribed("event") == ["US:*:REAL_TIME"]
            await c.close()

            async with connect(srv.ws_url + "/ws") as ws:  # the raw protocol
                await ws.send(json.dumps({"message_type": "subscribe", "params": {"topics": ["STOCK:US:AAPL"]}}))
                first = await recv_json(ws)
                assert first["message_type"] == "authenticate" and first["result"]["authenticated"] is False
            async with connect(srv.ws_url + "/ws") as ws:
                await ws.send(json.dumps({"message_type": "authenticate", "params": {"secret_key": KEY}}))
                assert (await recv_json(ws))["result"] == {"authenticated": True}
                await ws.send(json.dumps({"message_type": "subscribe", "params": {"topics": ["FOREX:GLOBAL:EURUSD"]}}))
                assert (await recv_json(ws))["result"] == {"ohlc:1m": ["FOREX:GLOBAL:EURUSD"]}  # default type ohlc
                await ws.send(json.dumps({"message_type": "show_subscribe"}))
                replies = [(await recv_json(ws))["result"] for _ in range(3)]
                assert replies == [{"ohlc:1m": ["FOREX:GLOBAL:EURUSD"]}, {"event": []}, {"news": []}]
                await ws.send("not json")
                assert (await recv_json(ws))["message_type"] == "error"

    try:
        asyncio.run(run())
    finally:
        logger.remove(sink)
    assert lines and not any(KEY in m or "not-the-key" in m for m in lines)  # keys never logged


def test_pushes_in_time_order_per_connection_and_end_of_data(tmp_path: Path) -> None:
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="INFO")

    async def run() -> None:
        st = settings(tmp_path, replay_progress_every=0.001)
        async with ReplayServer(st, speed=0, autostart="manual") as srv:
            c = AitradosWSClient(srv.ws_url, "any-key")
            await c.subscribe_ohlc("STOCK:US:AAPL", "CRYPTO:GLOBAL:*")
            await c.subscribe_news("STOCK:US:*")
            await c.subscribe_event("US:*")
            await c.start()
            for kind in ("ohlc", "news", "event"):
                await c.wait_subscribed(kind)
            async with connect(srv.ws_url + "/ws") as raw:  # a second connection, other subscriptions
                await raw.send(json.dumps({"message_type": "authenticate", "params": {"secret_key": "x"}}))
                await recv_json(raw)
                await raw.send(json.dumps({"message_type": "subscribe",
                                           "params": {"subscribe_type": "ohlc", "topics": ["FOREX:GLOBAL:EURUSD"]}}))
                await recv_json(raw)
                srv.start_clock()
                got: list[Any] = []
                async for rec in c:
                    got.append(rec)
                    if isinstance(rec, ReplayEnd):
                        break
                raw_bars: list[dict[str, Any]] = []
                while True:
                    m = await recv_json(raw)
                    if m["message_type"] == "replay_end":
                        break
                    assert m["message_type"] == "ohlc"
                    raw_bars += m["result"]
            await c.close()
            store = srv.store
            stream = store.stream_bars()
            bars = [r for r in got if isinstance(r, Bar)]
            want = [b for b in stream if b.full_symbol in ("STOCK:US:AAPL", "CRYPTO:GLOBAL:BTCUSD", "CRYPTO:GLOBAL:ETHUSD")]
            assert sorted(bars, key=lambda b: (b.close_datetime, b.full_symbol)) == \
                sorted(want, key=lambda b: (b.close_datetime, b.full_symbol))
            assert [due(r) for r in got] == sorted(due(r) for r in got)  # time order across kinds
            assert [n.title for n in got if isinstance(n, NewsItem)] == ["aapl one", "aapl two"]
            assert [e.event_code for e in got if isinstance(e, CalendarEvent)] == ["CPI_YOY"]
            assert isinstance(got[-1], ReplayEnd) and got[-1].clock == store.end
            assert {r["symbol"] for r in raw_bars} == {"EURUSD"}
            assert len(raw_bars) == sum(b.full_symbol == "FOREX:GLOBAL:EURUSD" for b in stream)
            assert raw_bars[0]["asset_schema"] == "forex" and raw_bars[0]["trading_session"] == "RTH"
            state = srv.state()
            assert state["ended"] and state["ticks_sent"] == state["ticks_total"]
            assert srv.clock.now() == store.end

    try:
        asyncio.run(run())
    finally:
        logger.remove(sink)
    assert any("replay progress" in m for m in lines) and any("replay ended" in m for m in lines)


def test_on_bars_takes_each_pushed_time_step_in_one_call_with_the_bars_on_bar_gets(tmp_path: Path) -> None:
    """``on_bars`` gets a pushed message's bars (one time step of every subscribed symbol) in one
    call; flattened, they are exactly the bars a client with ``on_bar`` gets one by one."""
    with pytest.raises(ValueError, match="on_bar or on_bars"):
        AitradosWSClient("ws://127.0.0.1:1", KEY, on_bar=print, on_bars=print)

    async def run() -> None:
        st = settings(tmp_path)
        async with ReplayServer(st, speed=0, autostart="manual") as srv:
            calls: list[list[Bar]] = []
            one_by_one: list[Bar] = []
            ends: list[ReplayEnd] = []

            async def on_bars(bars: list[Bar]) -> None:  # async: awaited once per message
                calls.append(list(bars))

            batched = AitradosWSClient(srv.ws_url, KEY, on_bars=on_bars, on_replay_end=ends.append)
            single = AitradosWSClient(srv.ws_url, KEY, on_bar=one_by_one.append, on_replay_end=ends.append)
            for c in (batched, single):
                await c.subscribe_ohlc("STOCK:US:AAPL", "CRYPTO:GLOBAL:*", "FOREX:GLOBAL:EURUSD")
                await c.start()
                await c.wait_subscribed("ohlc")
            srv.start_clock()
            async with asyncio.timeout(30):
                while len(ends) < 2:
                    await asyncio.sleep(0.01)
            for c in (batched, single):
                await c.close()
            flat = [b for call in calls for b in call]
            assert flat == one_by_one and len(flat) == len(srv.store.stream_bars())
            assert len(calls) < len(flat) and max(len(call) for call in calls) == len(SYMS)
            assert all(len({b.close_datetime for b in call}) == 1 for call in calls)  # one time step a call

    asyncio.run(run())


def test_reconnect_backfills_every_missed_bar_exactly_once(tmp_path: Path) -> None:
    async def run() -> None:
        st = settings(tmp_path)
        async with ReplayServer(st, speed=20000, autostart="manual") as srv:  # 3 ms per simulated minute
            http = AsyncAitradosHTTPClient(srv.http_url, KEY)
            c = AitradosWSClient(srv.ws_url, KEY, http=http, settings=st, max_reconnect_attempts=20)
            await c.subscribe_ohlc("STOCK:US:AAPL", "CRYPTO:GLOBAL:*")
            await c.start()
            await c.wait_subscribed("ohlc")
            srv.start_clock()
            got: list[Bar] = []
            drops = 0
            async for rec in c:
                if isinstance(rec, ReplayEnd):
                    break
                got.append(rec)
                if len(got) in (40, 200) and drops < 2:
                    drops += srv.drop_connections()  # TCP abort, no close handshake
            await c.close()
            await http.aclose()
            assert drops == 2 and c.reconnects == 2
            assert c.backfilled > 0  # bars closed during the outages came over HTTP
            keys = [(b.full_symbol, b.datetime) for b in got]
            assert len(keys) == len(set(keys))  # none twice
            want = {(b.full_symbol, b.datetime) for b in srv.store.stream_bars() if b.full_symbol != "FOREX:GLOBAL:EURUSD"}
            assert set(keys) == want  # none lost
            for sym in {k[0] for k in keys}:
                times = [t for s, t in keys if s == sym]
                assert times == sorted(times)
            assert all(isinstance(b, Bar) and b.interval == "1M" for b in got)

    asyncio.run(run())


def test_give_up_after_bounded_reconnects(tmp_path: Path) -> None:
    async def run() -> None:
        st = settings(tmp_path)
        errors: list[BaseException] = []
        srv = ReplayServer(st, autostart="manual")
        await srv.start()
        c = AitradosWSClient(srv.ws_url, KEY, settings=st, max_reconnect_attempts=2, on_error=errors.append,
                             queue_records=True)
        await c.start()
        await srv.stop()  # the server goes away for good
        with pytest.raises(MarketDataError, match="gave up after 2 reconnect attempts"):
            async for _ in c:
                pass
        assert errors and c.error is errors[0]

    asyncio.run(run())


def test_start_against_no_server_says_so() -> None:
    async def run() -> None:
        with pytest.raises(MarketDataError, match="cannot connect to ws://127.0.0.1:9/ws"):
            await AitradosWSClient("ws://127.0.0.1:9", KEY).start()

    asyncio.run(run())


def test_failed_backfill_is_surfaced_and_the_stream_goes_on(tmp_path: Path) -> None:
    from aitrados.marketdata.errors import ServerUnavailableError
    from aitrados.marketdata.http_client import RetryPolicy

    async def run() -> None:
        st = settings(tmp_path)
        errors: list[BaseException] = []
        async with ReplayServer(st, speed=20000, autostart="manual") as srv:
            http = AsyncAitradosHTTPClient(srv.http_url, KEY, retry=RetryPolicy(2, 5, 0.01, 0.01))
            c = AitradosWSClient(srv.ws_url, KEY, http=http, settings=st, on_error=errors.append, queue_records=True)
            await c.subscribe_ohlc("CRYPTO:GLOBAL:BTCUSD")
            await c.start()
            await c.wait_subscribed("ohlc")
            srv.inject_failures(1000, 503, "ohlc_history")  # HTTP backfill will fail
            srv.start_clock()
            n, end = 0, None
            async for rec in c:
                if isinstance(rec, ReplayEnd):
                    end = rec
                    break
                n += 1
                if n == 30:
                    srv.drop_connections()
            await c.close()
            await http.aclose()
            assert end is not None and c.reconnects == 1 and c.backfilled == 0
            assert any(isinstance(e, ServerUnavailableError) for e in errors)

    asyncio.run(run())


async def _raw_session(url: str, **kw: Any) -> Any:
    ws = await connect(url + "/ws", **kw)
    await ws.send(json.dumps({"message_type": "authenticate", "params": {"secret_key": "x"}}))
    assert (await recv_json(ws))["result"]["authenticated"] is True
    await ws.send(json.dumps({"message_type": "subscribe", "params": {"subscribe_type": "ohlc", "topics": ["CRYPTO:GLOBAL:*"]}}))
    assert (await recv_json(ws))["message_type"] == "show_subscribe"
    return ws


def test_a_client_that_stops_reading_is_dropped_and_holds_up_nobody(tmp_path: Path) -> None:
    syms = [f"CRYPTO:GLOBAL:C{i:02d}USD" for i in range(40)]
    st = settings(tmp_path, replay_symbols=syms, replay_days=2, replay_history_days=0.01,
                  replay_ws_queue=8, replay_ws_slow_timeout=1.0)

    async def run() -> None:
        async with ReplayServer(st, speed=0, autostart="manual") as srv:
            # max_queue=1: the stalled client's library stops reading the socket at once
            stalled = await _raw_session(srv.ws_url, max_queue=1)
            healthy = await _raw_session(srv.ws_url)
            srv.start_clock()
            bars = 0
            for _ in range(1_000_000):  # bounded: one iteration per push, replay_end stops it
                m = await recv_json(healthy)
                if m["message_type"] == "replay_end":
                    break
                assert m["message_type"] == "ohlc", m
                bars += len(m["result"])
            want = sum(b.full_symbol.startswith("CRYPTO:GLOBAL:") for b in srv.store.stream_bars())
            assert bars == want > 0  # the healthy client lost nothing
            assert srv.slow_disconnects == 1 and srv.state()["connections"] == 1
            await healthy.close()
            with pytest.raises(Exception):  # the stalled one was cut off: its stream ends in an error
                for _ in range(1_000_000):
                    await asyncio.wait_for(stalled.recv(), 10)

    asyncio.run(run())


def test_a_huge_bad_subscribe_gets_a_small_error_frame(tmp_path: Path) -> None:
    async def run() -> None:
        async with ReplayServer(settings(tmp_path), autostart="manual") as srv:
            async with connect(srv.ws_url + "/ws") as ws:
                await ws.send(json.dumps({"message_type": "authenticate", "params": {"secret_key": "x"}}))
                await recv_json(ws)
                topics = [f"STOCK:US:NOPE{i:05d}" for i in range(10_000)]
                await ws.send(json.dumps({"message_type": "subscribe",
                                          "params": {"subscribe_type": "ohlc", "topics": topics}}))
                raw = await asyncio.wait_for(ws.recv(), 30)
                err = json.loads(raw)
                assert err["message_type"] == "error" and err["message"].startswith("10000 of 10000 topics")
                assert len(raw) < 64 * 1024 and err["detail"]["not_listed"] == 10_000 - len(err["detail"]["topics"])
                assert "STOCK:US:NOPE00000" in err["detail"]["topics"][0]
                assert (await recv_json(ws))["message_type"] == "show_subscribe"

    asyncio.run(run())


def test_replay_control_needs_the_token_without_a_key(tmp_path: Path) -> None:
    import httpx

    async def run() -> None:
        async with ReplayServer(settings(tmp_path, replay_control_token="ctl-token-1"), autostart="manual") as srv:
            async with httpx.AsyncClient() as h:
                assert (await h.get(f"{srv.http_url}/replay/state")).status_code == 200  # reading is open
                for action in ("start", "pause", "resume"):
                    r = await h.get(f"{srv.http_url}/replay/{action}", params={"secret_key": "anything"})
                    assert r.status_code == 401 and "token" in r.json()["message"], action
                assert srv.state()["ticks_sent"] == 0 and not srv.ended  # the refused start did nothing
                r = await h.get(f"{srv.http_url}/replay/start", params={"token": "ctl-token-1"})
                assert r.status_code == 200
                await asyncio.wait_for(srv.wait_ended(), 30)
        async with ReplayServer(settings(tmp_path), autostart="manual") as srv:  # no token set: a random one
            assert len(srv.control_token) >= 20
            async with httpx.AsyncClient() as h:
                assert (await h.get(f"{srv.http_url}/replay/pause", params={"token": ""})).status_code == 401
                r = await h.get(f"{srv.http_url}/replay/pause", params={"token": srv.control_token})
                assert r.status_code == 200

    asyncio.run(run())
