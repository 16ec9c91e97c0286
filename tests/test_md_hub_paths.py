"""The market-data hub's shortcuts give exactly what its general path gives.

The hub publishes a bar that feeds one window outside aligned groups without building a
``FeedResult``, and writes ``chart.`` bodies itself instead of encoding a struct: here the same
bars go through ``_on_bars`` (the shortcuts) and, one by one, through ``ChartFlow.feed`` and
``_deliver`` (the general path) of a second hub, and every published message (topic, sequence
number, body bytes) and every consumer event must be the same, in the same order. The messages are
read off real ZeroMQ sockets.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from collections.abc import Awaitable
from typing import Any

import msgspec
import pytest
import zmq

from aitrados.bus import protocol as P
from aitrados.bus.pubsub import Publisher
from aitrados.events import Kind
from aitrados.marketdata import hub as H
from aitrados.marketdata.http_client import AsyncAitradosHTTPClient
from aitrados.marketdata.hub import MarketDataHub
from aitrados.marketdata.models import Bar
from aitrados.marketdata.settings import MarketDataSettings

pytestmark = pytest.mark.timeout(120)
UTC = dt.timezone.utc
T0 = dt.datetime(2024, 3, 4, 14, 30, tzinfo=UTC)  # a Monday, the US session's open


def steps(rng: random.Random, n: int) -> list[list[Bar]]:
    """*n* pushed messages, one per minute, each with a bar of every symbol: closed 1-minute bars,
    some preceded by an update of the forming bar (``closed=False``), some only that update (the next
    bar closes it), and repeats of older bars."""
    syms = ["STOCK:US:AAA", "STOCK:US:BBB", "STOCK:US:CCC", "STOCK:US:DDD", "STOCK:US:EEE"]
    last: dict[str, Bar] = {}
    out = []
    for i in range(n):
        t = T0 + dt.timedelta(minutes=i)
        msg = []
        for fs in syms:
            px = 100 + rng.random()
            bar = Bar(fs, "1M", t, t + dt.timedelta(minutes=1), px, px + 1, px - 1, px + rng.random() - 0.5,
                      float(rng.randint(0, 500)), rng.choice([None, px]), True)
            r = rng.random()
            if r < 0.3:
                msg.append(msgspec.structs.replace(bar, close=px, closed=False))
            if fs in last and rng.random() < 0.1:
                msg.append(last[fs])  # stale: the windows ignore it
            if r >= 0.1:
                msg.append(bar)
            last[fs] = bar
        out.append(msg)
    return out


class Recorder:
    """A hub consumer that logs every event; on every 7th bar it returns an awaitable (which really
    suspends) instead of finishing at once."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self._bars = 0

    def __call__(self, kind: str, obj: Any) -> Awaitable[None] | None:
        self.events.append((kind, obj))
        if kind == Kind.BAR:
            self._bars += 1
            if self._bars % 7 == 0:
                return asyncio.sleep(0)
        return None


async def run_hub(bars: list[list[Bar]], shortcut: bool) -> tuple[list[tuple[bytes, int, bytes]], list[Any], dict]:
    """Feed *bars* to a new hub (``_on_bars`` per message, or the general path bar by bar); returns the
    messages it published (topic, sequence number, body), the events its consumers got and its counts."""
    ctx = zmq.Context()
    addr = f"inproc://hub-paths-{shortcut}"
    sink = ctx.socket(zmq.SUB)
    sink.rcvhwm = 0
    sink.setsockopt(zmq.SUBSCRIBE, b"")
    sink.bind(addr)
    pub = Publisher(addr, context=ctx)
    while not sink.poll(10):  # until the subscription reached the publisher
        pub.publish("probe", None)
    while sink.poll(0):
        sink.recv_multipart()
    http = AsyncAitradosHTTPClient("http://127.0.0.1:9", "unused", settings=MarketDataSettings())
    hub = MarketDataHub(pub, http, "ws://127.0.0.1:9", "unused", window_size=5)
    rec = Recorder()
    hub.consumers.append(rec)
    hub.flow.add("STOCK:US:AAA", "1M")  # one window of the bars' interval: the shortcut
    hub.flow.add("STOCK:US:BBB", "5M")  # one aggregating window (live bars, UPDATED, OPENED): the shortcut
    hub.flow.add("STOCK:US:CCC", "1M")  # two windows: the general path
    hub.flow.add("STOCK:US:CCC", "15M")
    hub.flow.add_group("pair", {"STOCK:US:DDD": ["1M"], "STOCK:US:CCC": ["5M"]})  # aligned: the general path
    # EEE has no window: nothing is published for it
    for msg in bars:
        if shortcut:
            await hub._on_bars(msg)
        else:
            for b in msg:
                hub.counts["bars_in"] += 1
                await hub._advance(b.close_datetime)
                await hub._process_bar(b)  # feed and _deliver
    got = []
    while sink.poll(1000):
        topic, meta, body = sink.recv_multipart()
        _, pid, seq = P.META.unpack(meta)
        assert pid == pub.publisher_id
        got.append((topic, seq, body))
    pub.close()
    sink.close(0)
    await http.aclose()
    ctx.term()
    return got, rec.events, hub.counts


def test_the_shortcuts_publish_and_hand_on_what_the_general_path_does() -> None:
    bars = steps(random.Random(20261203), 240)
    fast, fast_events, fast_counts = asyncio.run(run_hub(bars, True))
    slow, slow_events, slow_counts = asyncio.run(run_hub(bars, False))
    assert len(fast) > 3000 and {t.split(b".")[0] for t, _, _ in fast} == {b"ohlc", b"chart", b"mtf", b"replay"}
    assert fast == slow
    assert fast_events == slow_events
    assert fast_counts == slow_counts


@pytest.mark.parametrize("seed", range(5))
def test_chart_bodies_are_the_bytes_of_the_chart_message_struct(seed: int) -> None:
    """``_chart_body`` writes what msgpack-encoding ``_ChartMessage`` gives, for any sizes of names,
    numbers and lists (each msgpack header has several widths)."""
    rng = random.Random(seed)
    for _ in range(2000):
        fs = "STOCK:US:" + "A" * rng.choice([1, 4, 22, 23, 40, 300])
        iv = rng.choice(["1M", "5M", "DAY"])
        size = rng.choice([2, 127, 128, 255, 256, 65535, 65536, 2**32])
        seq = rng.choice([0, 1, 127, 128, 2**16, 2**32, 2**63])
        count = rng.randint(0, 70000)
        closed = [P.encode(rng.random()) for _ in range(rng.choice([0, 1, 2, 15, 16, 17, 40]))]
        last = rng.choice([None, P.encode("live"), *closed[-1:]])
        want = P.encode(H._ChartMessage(fs, iv, seq, size, count, None if last is None else msgspec.Raw(last),
                                        [msgspec.Raw(c) for c in closed]))
        assert H._chart_body(H._chart_parts(fs, iv, size), seq, count, last, closed) == want
