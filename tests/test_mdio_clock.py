"""Replay clock and timeline (pure), and the server's answers relative to its clock (no look-ahead)."""

from __future__ import annotations

import asyncio
import datetime as dt

import httpx
import pytest

from aitrados.marketdata.clock import ReplayClock, Timeline
from aitrados.marketdata.http_client import AitradosHTTPClient
from aitrados.marketdata.replay_server import ReplayServer, ReplayServerThread
from aitrados.marketdata.settings import MarketDataSettings
from aitrados.marketdata.ws_client import AitradosWSClient, ReplayEnd

pytestmark = pytest.mark.timeout(60)
UTC = dt.timezone.utc
T0 = dt.datetime(2018, 12, 24, 14, 30, tzinfo=UTC)


class FakeMonotonic:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_clock_speed_pause_and_freeze() -> None:
    mono = FakeMonotonic()
    c = ReplayClock(T0, speed=60, monotonic=mono)
    assert c.now() == T0 and not c.running
    mono.t += 5
    assert c.now() == T0  # not started: does not move
    c.begin()
    mono.t += 2
    assert c.now() == T0 + dt.timedelta(minutes=2)  # x60: 2 real seconds = 2 simulated minutes
    assert c.seconds_until(T0 + dt.timedelta(minutes=3)) == pytest.approx(1.0)
    c.pause()
    mono.t += 100
    assert c.now() == T0 + dt.timedelta(minutes=2)
    c.begin()
    mono.t += 1
    assert c.now() == T0 + dt.timedelta(minutes=3)
    c.freeze()
    mono.t += 10
    c.begin()  # frozen (end of data) stays frozen
    assert c.now() == T0 + dt.timedelta(minutes=3) and not c.running
    with pytest.raises(RuntimeError, match="speed=0"):
        c.advance_to(T0)
    with pytest.raises(ValueError, match=">= 0"):
        ReplayClock(T0, speed=-1)


def test_as_fast_as_possible_clock_only_moves_forward() -> None:
    c = ReplayClock(dt.datetime(2018, 12, 24, 14, 30), speed=0)  # naive = UTC
    assert c.now() == T0 and c.as_fast_as_possible
    c.begin()
    c.advance_to(T0 + dt.timedelta(minutes=5))
    c.advance_to(T0 + dt.timedelta(minutes=1))
    assert c.now() == T0 + dt.timedelta(minutes=5)
    assert c.seconds_until(T0 + dt.timedelta(days=1)) == 0.0
    asyncio.run(c.wait_until(T0 + dt.timedelta(minutes=9)))
    assert c.now() == T0 + dt.timedelta(minutes=9)


def test_timeline_orders_ticks_and_accepts_late_additions() -> None:
    m = dt.timedelta(minutes=1)
    tl = Timeline([(T0 + 2 * m, "event", {"e": 1}), (T0 + m, "ohlc", {"b": 1}), (T0 + 2 * m, "ohlc", {"b": 2}),
                   (T0 + 2 * m, "news", {"n": 1}), (T0 + m, "ohlc", {"b": 3})])
    walk, tick = [], tl.next_after(None)
    first = tick
    tl.add([(T0 + 3 * m, "ohlc", {"b": 4}), (T0, "ohlc", {"b": 0})])  # one ahead of the cursor, one behind
    while tick is not None:
        walk.append((tick.due - T0, tick.kind, tick.records))
        tick = tl.next_after(tick)
    assert first.records == [{"b": 1}, {"b": 3}]  # same instant and kind: one push
    assert walk == [(m, "ohlc", [{"b": 1}, {"b": 3}]), (2 * m, "ohlc", [{"b": 2}]), (2 * m, "news", [{"n": 1}]),
                    (2 * m, "event", [{"e": 1}]), (3 * m, "ohlc", [{"b": 4}])]
    assert tl.first == T0 and tl.last == T0 + 3 * m and len(tl) == 6
    assert tl.first_after(T0 + 2 * m).due == T0 + 3 * m
    with pytest.raises(ValueError, match="unknown timeline kind"):
        tl.add([(T0, "trade", {})])


def test_http_answers_follow_the_clock_no_look_ahead() -> None:
    st = MarketDataSettings(replay_symbols=["STOCK:US:AAPL"], replay_days=1, replay_history_days=4)
    with ReplayServerThread(st, autostart="manual", speed=0) as srv, AitradosHTTPClient(srv.http_url, "k") as c:
        s = srv.server
        last = c.ohlc_latest("STOCK:US:AAPL", "1M", limit=1)[0]
        assert last.close_datetime == dt.datetime(2018, 12, 21, 21, 0, tzinfo=UTC)  # Friday close before Monday's start
        t = T0 + dt.timedelta(minutes=47, seconds=30)
        srv.call(s.clock.advance_to, t)
        bars = c.ohlc_latest("STOCK:US:AAPL", "1M", limit=3)
        assert bars[-1].close_datetime == T0 + dt.timedelta(minutes=47)  # the 15:17 bar is still forming
        m15 = c.ohlc_latest("STOCK:US:AAPL", "15M", limit=1)[0]
        assert m15.close_datetime == T0 + dt.timedelta(minutes=45)  # a 15M bar appears only once closed
        day = c.ohlc_history("STOCK:US:AAPL", "DAY", "2018-12-01", "2019-01-31")
        assert day[-1].datetime.date() == dt.date(2018, 12, 21)  # today's DAY bar has not closed
        future = c.ohlc_history("STOCK:US:AAPL", "1M", t, t + dt.timedelta(days=2))
        assert future == []
        state = httpx.get(f"{srv.http_url}/replay/state").json()["result"]
        assert state["clock"] == "2018-12-24T15:17:30+00:00" and not state["ended"] and not state["running"]
        assert state["requests"]["ohlc_latest"] == 3


def test_speed_replay_keeps_order_and_ends_cleanly() -> None:
    async def run() -> None:
        st = MarketDataSettings(replay_symbols=["CRYPTO:GLOBAL:BTCUSD"], replay_days=0.02, replay_history_days=0,
                                replay_bundled=False)
        async with ReplayServer(st, speed=6000, autostart="first_subscribe") as srv:  # 10 ms per minute
            async with AitradosWSClient(srv.ws_url, "k") as c:
                await c.subscribe_ohlc("CRYPTO:GLOBAL:BTCUSD")  # starts the clock
                got = []
                async for rec in c:
                    got.append(rec)
                    if isinstance(rec, ReplayEnd):
                        break
            bars = got[:-1]
            assert len(bars) == 28  # 0.02 day = 28.8 minutes: 28 bars close inside the window
            assert [b.close_datetime for b in bars] == [T0 + dt.timedelta(minutes=i + 1) for i in range(28)]
            assert got[-1].clock == srv.store.end and srv.ended
            # a late subscriber after the end gets the end signal right away
            async with AitradosWSClient(srv.ws_url, "k") as late:
                await late.subscribe_ohlc("CRYPTO:GLOBAL:BTCUSD")
                first = await asyncio.wait_for(late.__aiter__().__anext__(), 10)
                assert isinstance(first, ReplayEnd)

    asyncio.run(run())
