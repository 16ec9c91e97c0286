"""A subscriber's sequence tracking: the batch path (the C extension's ``track`` for the common case,
``_Tracker.process`` for the rest) gives exactly what ``process`` alone gives, message by message,
on random traffic with new topics, gaps, repeats, reordering, malformed frames and undecodable bodies."""

from __future__ import annotations

import random
from collections import deque

import pytest
import zmq

from aitrados.bus import fastio
from aitrados.bus import protocol as P
from aitrados.bus.pubsub import Message, _Tracker

pytestmark = pytest.mark.timeout(60)


def traffic(seed: int, n: int = 3000) -> list[list[bytes]]:
    """Random messages as the router delivers them: mostly in-order streams of three publishers on
    a few topics, with gaps, repeats, reordering and junk mixed in."""
    rnd = random.Random(seed)
    pids = [rnd.randbytes(8) for _ in range(3)]
    topics = [b"ohlc.A.1M", b"ohlc.B.1M", b"news.x", "chart.\u00e9.1D".encode()]
    seq = {(p, t): 0 for p in pids for t in topics}
    out: list[list[bytes]] = []
    for _ in range(n):
        p, t = rnd.choice(pids), rnd.choice(topics)
        r = rnd.random()
        if r < 0.85:
            seq[p, t] += 1
        elif r < 0.90:
            seq[p, t] += rnd.randint(2, 50)  # a gap
        elif r < 0.93:
            seq[p, t] = max(1, seq[p, t] - rnd.randint(0, 3))  # a repeat or reordering
        body = P.encode({"i": len(out), "v": rnd.random()})
        meta = P.META.pack(P.META_VERSION, p, seq[p, t])
        r = rnd.random()
        if r < 0.02:
            out.append([t, meta])  # too few frames
        elif r < 0.04:
            out.append([t, meta, body, b"extra"])
        elif r < 0.05:
            out.append([t, b"\x02" + meta[1:], body])  # an unknown meta version
        elif r < 0.06:
            out.append([t, meta[:-1], body])  # a short meta frame
        elif r < 0.07:
            out.append([b"bad topic", meta, body])
        elif r < 0.08:
            out.append([t, meta, b"\xc1"])  # never valid msgpack
        else:
            out.append([t, meta, body])
    return out


def queued(ctx: zmq.Context, name: str, msgs: list[list[bytes]]) -> tuple[zmq.Socket, zmq.Socket]:
    """An inproc PAIR (receiver, sender) with *msgs* already queued on the receiver, whole and in order
    (no high-water mark: inproc hands every sent message to the receiver's pipe at once)."""
    rx, tx = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    rx.rcvhwm = tx.sndhwm = 0
    rx.bind(f"inproc://{name}")
    tx.connect(f"inproc://{name}")
    for f in msgs:
        fastio.send_frames(tx, f)
    return rx, tx


def as_tuple(m: Message) -> tuple:
    return (m.topic, m.seq, m.publisher, m.data)


@pytest.mark.parametrize("decode", [True, False])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_batch_path_equals_the_message_by_message_path(seed: int, decode: bool) -> None:
    msgs = traffic(seed)
    ref = _Tracker()
    expected = [as_tuple(m) for f in msgs if (m := ref.process(list(f), decode)) is not None]

    ctx = zmq.Context()
    rx, tx = queued(ctx, f"tracking-{seed}-{decode}", msgs)
    try:
        got: deque[Message] = deque()
        t = _Tracker()
        # inproc: every message is queued already, so a batch of 0 means all were read; batches of 97
        # cross every kind of boundary
        for _ in range(len(msgs)):
            if not t.read_batch(rx, 97, decode, got):
                break
    finally:
        rx.close(0)
        tx.close(0)
        ctx.term()
    assert [as_tuple(m) for m in got] == expected
    assert t.last == ref.last and t.gaps_by_topic == ref.gaps_by_topic
    if fastio.NATIVE:  # each message received whole: malformed ones are counted exactly
        assert t.stats == ref.stats
    else:  # the pure-Python reader may merge two short malformed messages into one (see _Tracker.read)
        assert t.stats.malformed <= ref.stats.malformed
        t.stats.malformed = ref.stats.malformed
        assert t.stats == ref.stats
    assert ref.stats.gaps and ref.stats.out_of_order and ref.stats.malformed  # the traffic had each kind


def test_track_stops_at_what_it_does_not_handle() -> None:
    """The C function's contract on its own: it takes the common case and returns the index of the
    first message the general path must see, leaving the state untouched for it."""
    if fastio.track is None:
        pytest.skip("AITRADOS_PURE_PYTHON is set: the C extension is not loaded")
    pid = b"p" * 8
    meta = lambda s: P.META.pack(P.META_VERSION, pid, s)  # noqa: E731
    topics = {b"t.a": "t.a"}
    seen: dict[tuple[bytes, bytes], int] = {}
    out: list[Message] = []
    batch = [[b"t.a", meta(1), P.encode(1)], [b"t.a", meta(2), P.encode(2)], [b"t.b", meta(1), P.encode(3)],
             [b"t.a", meta(5), P.encode(4)], [b"t.a", meta(3), b"\xc1"]]
    assert fastio.track(batch, 0, topics, seen, P.decode, P.DecodeError, Message, out) == 2  # t.b: a new topic
    assert [as_tuple(m) for m in out] == [("t.a", 1, pid, 1), ("t.a", 2, pid, 2)] and seen == {(pid, b"t.a"): 2}
    assert fastio.track(batch, 3, topics, seen, P.decode, P.DecodeError, Message, out) == 3  # 5 after 2: a gap
    assert fastio.track(batch, 4, topics, seen, P.decode, P.DecodeError, Message, out) == 4  # undecodable
    assert seen == {(pid, b"t.a"): 2} and len(out) == 2
    assert fastio.track(batch, 4, topics, seen, None, P.DecodeError, Message, out) == 5  # raw bytes: taken
    assert as_tuple(out[-1]) == ("t.a", 3, pid, b"\xc1") and seen == {(pid, b"t.a"): 3}


def test_the_monitors_c_sample_equals_its_python_sample() -> None:
    """The pub/sub monitor folds each batch to the newest sequence number per (topic, publisher):
    the C version and the Python one agree on random traffic (bad topics and subscription events
    included), batch by batch."""
    if fastio.sample is None:
        pytest.skip("AITRADOS_PURE_PYTHON is set: the C extension is not loaded")
    from aitrados.bus.pubsub import _py_sample

    msgs = traffic(7) + [[b"\x01ohlc."], [b"\x00ohlc."], [b"x"]]
    random.Random(7).shuffle(msgs)
    results = []
    ctx = zmq.Context()
    try:
        for k, fn in enumerate((fastio.sample, _py_sample)):
            rx, tx = queued(ctx, f"sample-{k}", msgs)
            valid: set[bytes] = set()
            batches = []
            for _ in range(len(msgs)):  # bounded; inproc: all queued already
                n, newest, others, bad = fn(rx, 113, valid, P.valid_topic)
                if not n:
                    break
                batches.append((n, newest, others, bad))
            results.append((batches, valid))
            rx.close(0)
            tx.close(0)
    finally:
        ctx.term()
    assert results[0] == results[1]
    batches = results[0][0]
    assert sum(b[0] for b in batches) == len(msgs)
    assert sum(b[3] for b in batches) > 0 and sum(len(b[2]) for b in batches) > 3  # bad topics, others
