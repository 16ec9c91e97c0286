"""Pub/sub router, publishers and subscribers: ordering, prefixes, gap detection, bad frames."""

from __future__ import annotations

import asyncio
import subprocess
import textwrap
import time
from collections.abc import Iterator

import msgspec
import pytest
import zmq

from aitrados.bus import AsyncSubscriber, Publisher, Subscriber
from aitrados.bus.probe import aprove, prove
from aitrados.bus.pubsub import SubscriberStats
from aitrados.bus import protocol as P
from aitrados.middleware import Middleware

from conftest import PYTHON, bus_settings, child_env

pytestmark = pytest.mark.timeout(60)


def joined(sub: Subscriber, publish, address: str) -> int:
    """Return once a probe sent with *publish* came back to *sub* through the router: the subscription
    and the publisher's connection are in place (ZeroMQ's slow joiner), and nothing came before it.
    Returns how many messages the subscriber had received by then (the probe is not the test's)."""
    assert prove(sub, publish, address, "test") == []
    return sub.stats.received


def test_ordering_from_another_process(mw: Middleware, settings) -> None:
    ep = mw.endpoints("ipc")
    sub = Subscriber(ep.subscribe, ["ohlc."])
    with Publisher(ep.publish) as pub:
        probes = joined(sub, pub.publish, ep.subscribe)
    code = textwrap.dedent(f"""
        from aitrados.bus import Publisher, Subscriber
        from aitrados.bus.probe import prove
        pub = Publisher({ep.publish!r})
        with Subscriber({ep.subscribe!r}) as own:  # proves this publisher's connection to the router
            assert prove(own, pub.publish, {ep.subscribe!r}, "child") == []
        for i in range(3000):
            pub.publish("ohlc.STOCK:US:SPX." + ("1M", "5M", "DAY")[i % 3], {{"i": i}})
        pub.publish("other.topic", "not for us")
        pub.close()
    """)
    proc = subprocess.Popen([PYTHON, "-c", code], env=child_env(settings))
    got: dict[str, list[int]] = {}
    while sum(map(len, got.values())) < 3000:
        m = sub.recv(timeout=10)
        assert m is not None, "publisher's messages did not arrive"
        got.setdefault(m.topic, []).append(m.data["i"])
        assert m.topic.startswith("ohlc.")
    proc.wait(10)
    assert set(got) == {"ohlc.STOCK:US:SPX.1M", "ohlc.STOCK:US:SPX.5M", "ohlc.STOCK:US:SPX.DAY"}
    for k, (topic, values) in enumerate(sorted(got.items())):
        assert values == sorted(values) and len(values) == 1000
    assert sub.stats.missed == 0 and sub.stats.gaps == 0 and sub.stats.received - probes == 3000
    assert sub.recv(timeout=0.3) is None  # "other.topic" was filtered out
    sub.close()


def test_recv_batch_hands_over_every_waiting_message_in_order_mixed_with_recv(mw: Middleware) -> None:
    ep = mw.endpoints("ipc")
    with Subscriber(ep.subscribe, ["b."]) as sub, Publisher(ep.publish) as pub:
        probes = joined(sub, pub.publish, ep.subscribe)
        assert sub.recv_batch(timeout=0.2) == []  # nothing yet: empty after the timeout
        for i in range(1000):
            pub.publish("b.x", i)
        seen: list[int] = []
        first = sub.recv(timeout=10)  # recv and recv_batch share one buffer
        assert first is not None
        seen.append(first.data)
        for _ in range(1000):  # bounded: each call returns at least one message
            if len(seen) == 1000:
                break
            batch = sub.recv_batch(timeout=10)
            assert batch, "messages that were published did not arrive"
            seen += [m.data for m in batch]
        assert seen == list(range(1000)) and sub.stats.received - probes == 1000 and sub.stats.missed == 0
        assert sub.recv_batch(timeout=0.2) == []


def test_gap_detected_when_a_slow_subscriber_overflows(ipc_dir: str) -> None:
    """High-water marks drop messages for a slow subscriber; every drop is counted, none silent."""
    s = bus_settings(ipc_dir, hwm=50)
    with Middleware(s) as mw:
        sub = Subscriber(mw.endpoints("ipc").subscribe, ["bar."], hwm=50)
        pub = Publisher(mw.endpoints("ipc").publish, hwm=50)
        probes = joined(sub, pub.publish, mw.endpoints("ipc").subscribe)
        n = 20_000
        for i in range(n):
            pub.publish("bar.X", i)
        seen = []
        while (m := sub.recv(timeout=1.0)) is not None:
            seen.append(m.seq)
        pub.publish("bar.X", "last")  # once the queues have room: shows a gap at the tail too
        m = sub.recv(timeout=5.0)
        assert m is not None and m.data == "last"
        seen.append(m.seq)
        st = sub.stats
        assert seen == sorted(seen) and seen[-1] == n + 1
        assert st.gaps > 0 and st.missed > 0
        assert st.received - probes + st.missed == n + 1 - (seen[0] - 1)
        sub.close()
        pub.close()


def test_malformed_messages_dropped_and_counted(mw: Middleware) -> None:
    ep = mw.endpoints("ipc")
    sub = Subscriber(ep.subscribe, [""])
    raw = zmq.Context.instance().socket(zmq.PUB)
    raw.linger = 0
    raw.connect(ep.publish)
    probes = iter(range(1, 10_000))
    joined(sub, lambda topic, obj: raw.send_multipart([topic.encode(), P.META.pack(1, b"rawprobe", next(probes)),
                                                       P.encode(obj)]), ep.subscribe)
    raw.send_multipart([b"t.bad", b"\x09" + b"x" * 16, b"\x80"])   # wrong meta version
    raw.send_multipart([b"t.bad", P.META.pack(1, b"abcdefgh", 1), b"\xc1"])  # undecodable body
    raw.send_multipart([b"\xff\xfe", P.META.pack(1, b"abcdefgh", 1), P.encode(1)])  # topic not UTF-8
    raw.send_multipart([b"t.bad", b"only two frames"])  # last: back-to-back short ones may count once
    # the good one on the same connection: the router keeps one connection's order
    raw.send_multipart([b"t.good", P.META.pack(1, b"rawgood1", 1), P.encode({"ok": True})])
    m = sub.recv(timeout=3)
    assert m is not None and m.topic == "t.good" and m.data == {"ok": True}
    assert sub.stats.malformed == 4
    raw.close()
    sub.close()


def test_messages_of_the_wrong_length_never_swallow_or_corrupt_valid_ones(mw: Middleware) -> None:
    """The subscriber reads three frames and asks libzmq for "more" only on the third; messages of
    one, two or four frames between valid ones must still leave every valid one intact."""
    ep = mw.endpoints("ipc")
    sub = Subscriber(ep.subscribe, ["t."])
    raw = zmq.Context.instance().socket(zmq.PUB)
    raw.linger = 0
    raw.sndhwm = 0
    raw.connect(ep.publish)
    pid = b"rawpub01"

    def valid(seq: int) -> list[bytes]:
        return [b"t.ok", P.META.pack(1, pid, seq), P.encode({"n": seq})]

    # make sure the subscription has reached the publisher before the sequence that matters
    deadline = time.monotonic() + 10
    while (m := sub.recv(timeout=0.05)) is None:
        assert time.monotonic() < deadline, "subscription never reached the raw publisher"
        raw.send_multipart([b"t.warm", P.META.pack(1, b"warmwarm", 1), P.encode(0)])
    while sub.recv(timeout=0.3) is not None:
        pass
    before = SubscriberStats(**msgspec.structs.asdict(sub.stats))
    junk = [
        [b"t.x"],                                                    # one frame
        [b"t.x", P.META.pack(1, pid, 99)],                           # two frames, a meta-looking second
        [b"t.x", P.META.pack(1, pid, 98), P.encode(0), b"t.ok"],     # four frames
        [b"t.x", b"y", P.META.pack(1, pid, 97), P.encode(0), b"z"],  # five frames, a valid-looking middle
    ]
    for seq in range(1, 6):
        raw.send_multipart(valid(seq))
        if seq <= len(junk):
            raw.send_multipart(junk[seq - 1])
    raw.send_multipart([b"t.x"])  # two back-to-back one-frame messages, then a valid one
    raw.send_multipart([b"t.y"])
    raw.send_multipart(valid(6))
    got = []
    while len(got) < 6:
        m = sub.recv(timeout=5)
        assert m is not None, f"valid messages missing after {got}"
        got.append((m.topic, m.seq, m.data))
    assert got == [("t.ok", n, {"n": n}) for n in range(1, 7)]
    assert sub.recv(timeout=0.3) is None
    st = sub.stats
    assert st.received - before.received == 6 and st.missed == 0 and st.gaps == 0
    # the four junk messages count one each; the back-to-back pair counts once or twice
    assert 5 <= st.malformed - before.malformed <= 6
    raw.close()
    sub.close()


def test_async_subscriber_and_prefixes(mw: Middleware) -> None:
    async def run() -> list[tuple[str, object]]:
        sub = AsyncSubscriber(mw.endpoints().subscribe, ["news.", "calendar."], context=mw.context)
        pub = mw.publisher()
        assert await aprove(sub, pub.publish, mw.endpoints().subscribe, "test") == []
        pub.publish("ohlc.A.1M", 0)
        pub.publish("news.STOCK:US:SPX", "headline")
        pub.publish("calendar.US", {"event": "CPI"})
        out = [(m.topic, m.data) async for m in _take(sub, 2)]
        assert await sub.recv(timeout=0.2) is None
        sub.close()
        return out

    assert asyncio.run(run()) == [("news.STOCK:US:SPX", "headline"), ("calendar.US", {"event": "CPI"})]


async def _take(sub: AsyncSubscriber, n: int):
    for _ in range(n):
        yield await sub.recv(timeout=3)


def test_invalid_topic_rejected(mw: Middleware) -> None:
    pub = mw.publisher()
    with pytest.raises(ValueError, match="invalid topic"):
        pub.publish("has space", 1)
    with pytest.raises(ValueError, match="invalid topic"):
        pub.publish("", 1)


def test_handler_subscription_survives_a_failing_handler(mw: Middleware) -> None:
    sub = mw.subscriber(["h."])
    got: list[object] = []

    def handler(m) -> None:
        if m.data == "boom":
            raise RuntimeError("handler bug")
        got.append(m.data)

    pub = mw.publisher()
    joined(sub, pub.publish, mw.endpoints().subscribe)
    stop = sub.start(handler)
    for v in (1, "boom", 2):
        pub.publish("h.x", v)
    deadline = time.monotonic() + 5
    while len(got) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    assert got == [1, 2] and sub.handler_errors == 1


def test_async_handler_subscription(mw: Middleware) -> None:
    async def run() -> list[object]:
        sub = AsyncSubscriber(mw.endpoints().subscribe, ["ah."], context=mw.context)
        got: list[object] = []
        done = asyncio.Event()

        async def handler(m) -> None:
            got.append(m.data)
            if len(got) == 3:
                done.set()

        pub = mw.publisher()
        assert await aprove(sub, pub.publish, mw.endpoints().subscribe, "test") == []
        task = asyncio.ensure_future(sub.run(handler))
        for i in range(3):
            pub.publish("ah.t", i)
        await asyncio.wait_for(done.wait(), 5)
        task.cancel()
        sub.close()
        return got

    assert asyncio.run(run()) == [0, 1, 2]


# ---------------------------------------------------------------- honest, bounded topic statistics
def _wait_for(fn, what: str, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _count(c, topic: str) -> int:
    return c.call("middleware", "topics").get(topic, {}).get("count", 0)


@pytest.mark.parametrize("count_all", [True, False])
def test_topic_counts_are_true_when_nobody_subscribes(ipc_dir: str, count_all: bool) -> None:
    """PUB sockets filter at the source: the router subscribes to everything so it still counts."""
    topic = "ohlc.STOCK:US:SPX.DAY"
    with Middleware(bus_settings(ipc_dir, count_all_topics=count_all)) as mw, \
            Publisher(mw.endpoints("ipc").publish) as pub, mw.rpc_client(timeout=5) as c:
        if not count_all:
            for _ in range(50):
                pub.publish(topic, {"close": 1.0})
            time.sleep(1.5)  # two monitor ticks: proves the absence below means something
            assert topic not in c.call("middleware", "topics")
            assert c.call("middleware", "stats")["pubsub"]["count_all_topics"] is False
            return
        _wait_for(lambda: pub.publish(topic, {"close": 0.0}) and _count(c, topic) > 0, "the router's subscription")
        first = _count(c, topic)
        for i in range(500):
            last = pub.publish(topic, {"close": float(i)})
        _wait_for(lambda: _count(c, topic) == last, f"count {last}")
        t = c.call("middleware", "topics")[topic]
        assert t["publishers"] == 1 and last >= first + 500
        assert c.call("middleware", "stats")["pubsub"]["subscriptions_total"] == 0


def test_topic_stats_are_capped_and_expire(ipc_dir: str) -> None:
    s = bus_settings(ipc_dir, topic_stats_max=100, topic_stats_ttl=0.5)
    with Middleware(s) as mw, Publisher(mw.endpoints("ipc").publish) as pub, mw.rpc_client(timeout=5) as c:
        _wait_for(lambda: pub.publish("warm.up", 1) and "warm.up" in c.call("middleware", "topics"), "warm-up")
        for i in range(5000):  # 5000 distinct topics, 50 times the cap
            pub.publish(f"t.{i}", i)
        st = _wait_for(lambda: (p := c.call("middleware", "stats")["pubsub"])["topics_untracked"] > 0 and p,
                       "untracked topics counted")
        assert st["topics"] <= 100 and len(c.call("middleware", "topics")) <= 100
        assert c.call("middleware", "ping")["pong"] is True
        _wait_for(lambda: len(c.call("middleware", "topics")) == 0, "silent topics expire")
        assert c.call("middleware", "stats")["pubsub"]["topics_expired"] >= 100
        pub.publish("warm.up", 2)  # a topic that speaks again is tracked again, its count kept from seq
        _wait_for(lambda: _count(c, "warm.up") >= 2, "the topic tracked again")


def test_topic_stats_logic() -> None:
    from aitrados.bus.topic_stats import TopicStats

    ts = TopicStats(max_topics=2, ttl=10)
    ts.observe(b"a", b"p1", 5, now=0.0)
    ts.observe(b"a", b"p1", 3, now=0.0)  # out of order: the highest sequence stays
    ts.observe(b"a", b"p2", 2, now=0.0)
    ts.observe(b"b", b"p1", 1, now=0.0)
    ts.observe(b"c", b"p1", 1, now=0.0)  # beyond the cap
    ts.tick(1.0)
    assert ts.snapshot() == {"a": {"count": 7, "publishers": 2, "rate": 0.0}, "b": {"count": 1, "publishers": 1, "rate": 0.0}}
    assert ts.untracked == 1
    ts.observe(b"a", b"p1", 9, now=5.0)
    ts.tick(3.0)
    assert ts.snapshot()["a"]["rate"] == 2.0  # 4 more messages over 2 s
    ts.tick(12.0)  # p2 and b silent for over 10 s: p2 retired (its 2 kept), b forgotten
    assert ts.snapshot() == {"a": {"count": 11, "publishers": 1, "rate": 0.0}} and ts.expired == 1


@pytest.fixture
def raw_pub() -> Iterator[tuple[Publisher, zmq.Socket]]:
    """A publisher and the XSUB it publishes to over inproc, subscribed to everything and joined:
    the publisher has seen the subscription (the slow joiner) and the joining messages are gone."""
    ctx = zmq.Context()
    sink = ctx.socket(zmq.XSUB)
    sink.linger = 0
    sink.bind("inproc://raw-pub")
    sink.send(b"\x01")
    pub = Publisher("inproc://raw-pub", context=ctx)
    try:
        for _ in range(1000):
            pub.publish_raw("join.x", b"")
            if sink.poll(10):
                break
        else:
            raise AssertionError("the publisher never saw the sink's subscription")
        while sink.poll(100):
            assert sink.recv_multipart()[0] == b"join.x"
        yield pub, sink
    finally:
        pub.close()
        sink.close()
        ctx.term()


def _drain_raw(sink: zmq.Socket, n: int) -> list[tuple[str, int, bytes]]:
    """*n* messages from *sink* as (topic, sequence number, body), waiting up to 10 s for each."""
    out = []
    for _ in range(n):
        assert sink.poll(10_000), f"only {len(out)} of {n} messages arrived"
        topic, meta, body = sink.recv_multipart()
        out.append((topic.decode(), P.META.unpack(meta)[2], body))
    return out


def test_a_batch_holds_its_messages_and_sends_them_in_order_when_it_ends(raw_pub: tuple[Publisher, zmq.Socket]) -> None:
    pub, sink = raw_pub
    assert pub.publish_raw("a.x", b"0") == 1  # outside a batch: sent at once
    assert _drain_raw(sink, 1) == [("a.x", 1, b"0")]
    with pub.batch():
        seqs = [pub.publish_raw("a.x", b"1"), pub.publish_raw("b.y", b"2")]
        with pub.batch():  # nested: only the outermost batch sends
            seqs.append(pub.publish_raw("a.x", b"3"))
        assert pub.held == 3
        assert sink.poll(50) == 0  # held: nothing reached the socket
    assert seqs == [2, 1, 3] and pub.held == 0
    assert _drain_raw(sink, 3) == [("a.x", 2, b"1"), ("b.y", 1, b"2"), ("a.x", 3, b"3")]
    with pytest.raises(ValueError, match="invalid topic"), pub.batch():
        pub.publish_raw("a.x", b"4")
        pub.publish_raw("bad topic", b"5")  # raises: the batch still sends what it took
    assert _drain_raw(sink, 1) == [("a.x", 4, b"4")]
    assert sink.poll(50) == 0  # and nothing of the rejected message


def test_a_batch_sends_every_batch_max_messages_and_flush_sends_at_once(raw_pub: tuple[Publisher, zmq.Socket]) -> None:
    pub, sink = raw_pub
    with pub.batch():
        for i in range(Publisher.BATCH_MAX + 1):
            pub.publish_raw("t.x", str(i).encode())
        # the first BATCH_MAX left when the batch was full; the rest wait for its end
        got = _drain_raw(sink, Publisher.BATCH_MAX)
        assert [b for _, _, b in got] == [str(i).encode() for i in range(Publisher.BATCH_MAX)]
        assert pub.held == 1
        pub.flush()
        assert pub.held == 0
        assert _drain_raw(sink, 1)[0][2] == str(Publisher.BATCH_MAX).encode()
        pub.publish_raw("t.x", b"last")
    assert _drain_raw(sink, 1) == [("t.x", Publisher.BATCH_MAX + 2, b"last")]
    pub.flush()  # outside a batch: nothing to do


def test_batches_and_single_messages_arrive_in_order_and_close_sends_what_a_batch_holds(mw: Middleware) -> None:
    """Through the router, a subscriber gets messages published inside batches and outside them in
    publishing order with consecutive sequence numbers; close() inside a batch sends what it holds."""
    ep = mw.endpoints("ipc")
    with Subscriber(ep.subscribe, ["bg."]) as sub:
        pub = Publisher(ep.publish, bus=mw.bus)
        assert prove(sub, pub.publish, ep.subscribe, "test") == []  # the subscription reached the publisher
        want = []
        for i in range(3000):
            topic = f"bg.{i % 7}"
            if i % 500 == 0:
                with pub.batch():
                    for j in range(300):
                        want.append((topic, pub.publish(topic, [i, j]), [i, j]))
            else:
                want.append((topic, pub.publish(topic, i), i))
        with pub.batch():
            want.append(("bg.last", pub.publish("bg.last", "held at close"), "held at close"))
            pub.close()  # inside the batch: what it holds leaves too
        got = []
        while len(got) < len(want):
            m = sub.recv(timeout=10)
            assert m is not None, f"{len(got)} of {len(want)} messages arrived"
            got.append((m.topic, m.seq, m.data))
        assert got == want
        assert sub.stats.missed == 0 and sub.stats.gaps == 0
