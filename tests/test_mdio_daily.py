"""Daily replay: the bundled S&P 500 / NASDAQ daily bars streamed over the WebSocket as DAY bars,
with the sample news and calendar in time order, a long window without generated 1-minute bars,
reconnect backfill at the streamed interval, and the first_subscribe grace period.

Oracles: the bundled CSV files read with pandas (not through the project's loader) and the sample
news/calendar JSON files read with json.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from websockets.asyncio.client import connect

from aitrados.marketdata.http_client import AsyncAitradosHTTPClient
from aitrados.marketdata.loader import bundled_data_dir
from aitrados.marketdata.models import Bar, CalendarEvent, NewsItem
from aitrados.marketdata.replay_server import ReplayServer, ReplayServerThread
from aitrados.marketdata.replay_store import ReplayStore
from aitrados.marketdata.settings import MarketDataSettings
from aitrados.marketdata.ws_client import AitradosWSClient, ReplayEnd

pytestmark = pytest.mark.timeout(60)

UTC = dt.timezone.utc
DATA = bundled_data_dir()
SYMS = {"STOCK:US:SPX": DATA / "bars" / "STOCK_US_SPX_DAY.csv", "STOCK:US:IXIC": DATA / "bars" / "STOCK_US_IXIC_DAY.csv"}
DATA_END = dt.datetime(2018, 12, 31, 21, 0, tzinfo=UTC)  # 16:00 New York on the last bundled day


def csv_days(sym: str, first: dt.date) -> dict[dt.date, float]:
    """{trading day: close} of a bundled file from ``first`` on, read with pandas."""
    df = pd.read_csv(SYMS[sym])
    days = pd.to_datetime(df["Date"], format="%m/%d/%Y").dt.date
    return {d: float(c) for d, c in zip(days, df["Close"]) if d >= first}


def ny_day(b: Bar) -> dt.date:
    return pd.Timestamp(b.datetime).tz_convert("America/New_York").date()


def due(rec: Any) -> dt.datetime:
    if isinstance(rec, Bar):
        return rec.close_datetime
    if isinstance(rec, NewsItem):
        return rec.published_date
    if isinstance(rec, CalendarEvent):
        return rec.event_timestamp
    return rec.clock


def daily(**over: Any) -> MarketDataSettings:
    cfg: dict[str, Any] = dict(replay_symbols=[], replay_start=dt.datetime(2018, 1, 1), replay_end="data_end",
                               replay_speed=0, ws_reconnect_initial_backoff=0.05, ws_reconnect_max_backoff=0.2)
    cfg.update(over)
    return MarketDataSettings(**cfg)


def test_daily_window_settings_and_store() -> None:
    st = daily(replay_start=dt.datetime(1999, 1, 4))
    store = ReplayStore(start=st.replay_start, end=st.replay_end, generated_symbols=st.replay_symbols)
    assert store.end == DATA_END
    assert store.stream_interval("STOCK:US:SPX") == "DAY"
    stream = store.stream_bars()
    assert {(b.full_symbol, b.interval) for b in stream} == {("STOCK:US:SPX", "DAY"), ("STOCK:US:IXIC", "DAY")}
    for sym in SYMS:
        mine = [b for b in stream if b.full_symbol == sym]
        assert {ny_day(b): b.close for b in mine} == csv_days(sym, dt.date(1999, 1, 4))
    # an explicit end cuts the stream; generated symbols keep streaming 1-minute bars
    short = ReplayStore(start=dt.datetime(2018, 12, 24, 14, 30, tzinfo=UTC), end=dt.datetime(2018, 12, 27, 21, 0),
                        generated_symbols=["STOCK:US:AAPL"], history_days=0)
    assert short.end == dt.datetime(2018, 12, 27, 21, 0, tzinfo=UTC)
    assert short.stream_interval("STOCK:US:AAPL") == "1M"
    spx = [ny_day(b) for b in short.stream_bars() if b.full_symbol == "STOCK:US:SPX"]
    assert spx == [dt.date(2018, 12, 24), dt.date(2018, 12, 26), dt.date(2018, 12, 27)]
    assert short.reference("STOCK:US:SPX")["replay_stream_interval"] == "DAY"
    # bad windows say what to do
    with pytest.raises(ValueError, match="replay_symbols=\\[\\]"):  # 20 years of generated minutes
        ReplayStore(start=dt.datetime(1999, 1, 4, tzinfo=UTC), end="data_end", generated_symbols=["STOCK:US:AAPL"])
    with pytest.raises(ValueError, match="not after the replay start"):
        ReplayStore(start=dt.datetime(2018, 1, 1, tzinfo=UTC), end=dt.datetime(2017, 1, 1, tzinfo=UTC))
    with pytest.raises(ValueError, match="needs bar files"):
        ReplayStore(start=dt.datetime(2018, 1, 1, tzinfo=UTC), end="data_end", bundled=False)
    with pytest.raises(ValueError):
        MarketDataSettings(replay_end="the end")


def test_daily_replay_streams_day_bars_news_and_events_in_time_order() -> None:
    news_src = json.loads((DATA / "news" / "US_2018_sample.json").read_text())
    events_src = json.loads((DATA / "calendar" / "US_2018_sample.json").read_text())

    async def consume(srv: ReplayServerThread) -> tuple[list[Any], list[dict[str, Any]]]:
        c = AitradosWSClient(srv.ws_url, "any-key")
        await c.subscribe_ohlc(*SYMS)
        await c.subscribe_news("STOCK:US:*")
        await c.subscribe_event("US:*")
        await c.start()
        for kind in ("ohlc", "news", "event"):
            await c.wait_subscribed(kind)
        async with connect(srv.ws_url + "/ws") as raw:  # the wire format, on a second connection
            await raw.send(json.dumps({"message_type": "authenticate", "params": {"secret_key": "x"}}))
            await raw.recv()
            await raw.send(json.dumps({"message_type": "subscribe",
                                       "params": {"subscribe_type": "ohlc", "topics": ["STOCK:US:SPX"]}}))
            await raw.recv()
            assert not srv.server.clock.running  # manual: nothing moves before the owner says so
            srv.start_clock()
            got: list[Any] = []
            async for rec in c:
                got.append(rec)
                if isinstance(rec, ReplayEnd):
                    break
            raw_msgs: list[dict[str, Any]] = []
            for _ in range(1000):  # bounded: 251 bars and the end message
                raw_msgs.append(json.loads(await asyncio.wait_for(raw.recv(), 10)))
                if raw_msgs[-1]["message_type"] == "replay_end":
                    break
        await c.close()
        return got, raw_msgs

    with ReplayServerThread(daily(), autostart="manual") as srv:
        got, raw_msgs = asyncio.run(consume(srv))
        state = srv.server.state()
    assert [m["message_type"] for m in raw_msgs] == ["ohlc"] * (len(raw_msgs) - 1) + ["replay_end"]
    raw_bars = [r for m in raw_msgs[:-1] for r in m["result"]]
    assert len(raw_bars) == len(csv_days("STOCK:US:SPX", dt.date(2018, 1, 1)))
    assert {(r["symbol"], r["interval"], r["asset_schema"]) for r in raw_bars} == {("SPX", "DAY", "stock")}
    assert raw_bars[0]["datetime"] == "2018-01-02T14:30:00+00:00"
    assert raw_bars[0]["close_datetime"] == "2018-01-02T21:00:00+00:00"
    assert [due(r) for r in got] == sorted(due(r) for r in got)  # one time order across kinds
    end = got[-1]
    assert isinstance(end, ReplayEnd) and end.clock == DATA_END
    bars = [r for r in got if isinstance(r, Bar)]
    assert all(b.interval == "DAY" and b.closed for b in bars)
    for sym in SYMS:
        assert {ny_day(b): b.close for b in bars if b.full_symbol == sym} == csv_days(sym, dt.date(2018, 1, 1))
        assert len([b for b in bars if b.full_symbol == sym]) == len(csv_days(sym, dt.date(2018, 1, 1)))
    assert [n.title for n in got if isinstance(n, NewsItem)] == [n["title"] for n in news_src]
    assert [e.event_code for e in got if isinstance(e, CalendarEvent)] == [e["event_code"] for e in events_src]
    assert state["ended"] and state["pushed"]["news"] == len(news_src) and state["pushed"]["event"] == len(events_src)


@pytest.mark.parametrize("speed", [3e7, 0], ids=["x3e7", "as-fast-as-possible"])
def test_daily_reconnect_backfills_every_day_bar_exactly_once(speed: float) -> None:
    async def run() -> None:
        st = daily(replay_start=dt.datetime(2016, 1, 1))
        async with ReplayServer(st, speed=speed, autostart="manual") as srv:  # x3e7: ~2.9 ms per day
            http = AsyncAitradosHTTPClient(srv.http_url, "any-key")
            c = AitradosWSClient(srv.ws_url, "any-key", http=http, settings=st, max_reconnect_attempts=20)
            await c.subscribe_ohlc(*SYMS)
            await c.start()
            await c.wait_subscribed("ohlc")
            srv.start_clock()
            got: list[Bar] = []
            drops = 0
            async for rec in c:
                if isinstance(rec, ReplayEnd):
                    assert rec.clock == DATA_END
                    break
                got.append(rec)
                if len(got) == 40 and drops == 0:
                    drops += srv.drop_connections()  # TCP abort mid-replay, no close handshake
            await c.close()
            await http.aclose()
            assert drops == 1 and c.reconnects == 1
            assert c.backfilled > 0  # days closed during the outage came over HTTP
            assert srv.api.counts["ohlc_history"] >= 2  # one backfill per symbol, at DAY
            assert all(k.endswith(" DAY") for k in srv.api.symbol_counts if k.startswith("ohlc_history"))
            assert all(b.interval == "DAY" for b in got)
            keys = [(b.full_symbol, ny_day(b)) for b in got]
            assert len(keys) == len(set(keys))  # none twice
            want = {(s, d) for s in SYMS for d in csv_days(s, dt.date(2016, 1, 1))}
            assert set(keys) == want  # none lost
            for sym in SYMS:
                days = [d for s, d in keys if s == sym]
                assert days == sorted(days)

    asyncio.run(run())


def test_first_subscribe_waits_for_symbols_subscribed_one_after_another() -> None:
    async def run() -> None:
        st = daily(replay_start=dt.datetime(2018, 6, 1), replay_autostart="first_subscribe",
                   replay_autostart_grace=3.0)
        async with ReplayServer(st) as srv:
            c = AitradosWSClient(srv.ws_url, "any-key")
            await c.start()
            await c.subscribe_ohlc("STOCK:US:SPX")
            await c.wait_subscribed("ohlc")  # a full round trip before the next subscription
            await asyncio.sleep(0.1)
            assert not srv.clock.running  # still inside the grace period
            await c.subscribe_ohlc("STOCK:US:IXIC")
            await c.wait_subscribed("ohlc")
            got: list[Bar] = []
            async for rec in c:
                if isinstance(rec, ReplayEnd):
                    break
                got.append(rec)
            await c.close()
            for sym in SYMS:
                days = [ny_day(b) for b in got if b.full_symbol == sym]
                assert days == sorted(csv_days(sym, dt.date(2018, 6, 1)))  # the later symbol missed nothing

    asyncio.run(run())


def test_manual_clock_started_over_http_after_subscribing() -> None:
    import httpx

    async def run() -> None:
        st = daily(replay_start=dt.datetime(2018, 12, 1), replay_autostart="manual")
        async with ReplayServer(st, secret_key="k-123") as srv:
            c = AitradosWSClient(srv.ws_url, "k-123")
            await c.subscribe_ohlc("STOCK:US:*")
            await c.start()
            await c.wait_subscribed("ohlc")
            await asyncio.sleep(0.2)
            assert not srv.clock.running and srv.ticks_sent == 0  # manual: waits for the owner
            async with httpx.AsyncClient() as h:
                assert (await h.get(f"{srv.http_url}/replay/start")).status_code == 401  # needs the key
                r = await h.get(f"{srv.http_url}/replay/start", params={"secret_key": "k-123"})
            assert r.status_code == 200 and r.json()["result"]["end"] == "2018-12-31T21:00:00+00:00"
            got: list[Bar] = []
            async for rec in c:
                if isinstance(rec, ReplayEnd):
                    break
                got.append(rec)
            await c.close()
            assert len(got) == sum(len(csv_days(s, dt.date(2018, 12, 1))) for s in SYMS)

    asyncio.run(run())
