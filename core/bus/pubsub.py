"""Pub/sub: the router (XSUB/XPUB proxy), publishers that stamp sequence numbers, and
subscribers that detect gaps.

Wire format of one message, three frames: ``topic`` (UTF-8, dotted, general to specific),
``meta`` (``protocol.META``: version, 8-byte publisher id, per-topic sequence number) and
``body`` (MessagePack). A subscriber tracks the last sequence per (publisher, topic) and
counts every missing number as lost: nothing is lost silently.

The router forwards in C (``zmq.proxy_steerable``); a monitor thread samples the traffic for
per-topic statistics (``topic_stats.TopicStats``: capped, expiring, read as an encoded snapshot)
from a tap: one more subscriber of every topic on the XPUB, whose bounded queue libzmq fills and
drops in C, and it sees subscriptions from above the XSUB. Counts are exact up to the newest
sampled message because they are read from the publishers' sequence numbers, so sampling never
undercounts what it has seen. With ``bus.count_all_topics`` (the default) the router subscribes to
every topic itself, so publishers send it every message and counts are true whether or not anyone
subscribes; without it the monitor reads the proxy's capture instead (what was forwarded).
Messages that do not follow the format are counted as malformed by the monitor and dropped by
every subscriber.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import msgspec
import zmq
import zmq.asyncio
from loguru import logger
from zmq.backend import Socket as _Base
from zmq.backend import zmq_poll

from .settings import BusSettings
from . import protocol as P
from .binding import bind_all, router_socket, unbind_inproc
from .fastio import DRAIN_BYTES, NATIVE, recv_messages, sample, send_frames, send_many, track
from .gaps import LEDGER, GapReports
from .memory import return_freed_memory, tune_allocator
from .topic_stats import TopicStats

_NOBLOCK = int(zmq.NOBLOCK)
# libzmq's recv itself, past pyzmq's pure-Python wrapper (see fastio.py)
_recv = _Base.recv
_META_SIZE = P.META.size
_META_VERSION = P.META_VERSION
_unpack_meta = P.META.unpack
_decode_body = P.decode
_DecodeError = P.DecodeError
# the C sequence checks assume this meta layout (17 bytes, version 1): otherwise the Python path
_C_META = NATIVE and _META_SIZE == 17 and _META_VERSION == 1
_track = track if _C_META else None


def _py_sample(sock: zmq.Socket, limit: int, valid: set[bytes],
               is_valid: Callable[[bytes], bool]) -> tuple[int, dict[tuple[bytes, bytes], int], list[list[bytes]], int]:
    """The pub/sub monitor's drain (``_fastzmq.sample`` in Python): receive up to *limit* waiting
    messages; returns how many, the highest sequence number per (topic, publisher id) among the
    well-formed publishes, every other message (bodies not kept), and how many had a topic that
    *is_valid* refused (topics it accepts are added to *valid*, so each is checked once)."""
    msgs = recv_messages(sock, limit, 2)
    newest: dict[tuple[bytes, bytes], int] = {}
    others: list[list[bytes]] = []
    bad = 0
    for frames in msgs:
        if len(frames) == 3 and len(frames[1]) == _META_SIZE and frames[1][0] == _META_VERSION:
            topic = frames[0]
            if topic not in valid:
                if not is_valid(topic):
                    bad += 1
                    continue
                valid.add(topic)
            _, pid, seq = _unpack_meta(frames[1])
            key = (topic, pid)
            if newest.get(key, -1) < seq:
                newest[key] = seq
        else:
            others.append(frames)
    return len(msgs), newest, others, bad


_sample = sample if _C_META and sample is not None else _py_sample


# ======================================================================== router
#: Most subscription prefixes listed in ``stats.pubsub.subscriptions`` (all are counted).
MAX_LISTED_SUBSCRIPTIONS = 1000


class PubSubRouter:
    """XSUB (publishers connect) to XPUB (subscribers connect), forwarded by libzmq.

    :param ctx: the ZeroMQ context
    :param bus: bus settings (high-water marks, message size)
    :param sub_addrs: addresses of the XSUB side (where publishers connect)
    :param pub_addrs: addresses of the XPUB side (where subscribers connect)
    """

    #: Capacity of the monitor's tap (or capture) queue; beyond it the monitor samples.
    MONITOR_HWM = 20_000
    #: Seconds between the monitor's drains of its queue.
    MONITOR_PERIOD = 0.05
    #: Messages the monitor samples at most per drain (so at most 20 x this a second). Each costs the
    #: router process Python work under the GIL, but the queue is read oldest first, so a smaller
    #: batch leaves counts and rates further behind the traffic (250 lagged 3-4 s behind a burst).
    MONITOR_BATCH = 1000
    #: Milliseconds the idle monitor waits for a message before its once-a-second tick (stop() wakes it).
    MONITOR_IDLE_POLL_MS = 200

    def __init__(self, ctx: zmq.Context, bus: BusSettings, sub_addrs: list[str], pub_addrs: list[str],
                 secure: Any = None) -> None:
        self.ctx = ctx
        self.bus = bus
        self.sub_addrs = sub_addrs
        self.pub_addrs = pub_addrs
        self._secure = secure
        self.bound: dict[str, list[str]] = {"sub": [], "pub": []}
        self.stats = TopicStats(bus.topic_stats_max, bus.topic_stats_ttl)
        self.subscriptions: dict[bytes, int] = {}
        self.counters = {"sampled": 0, "malformed": 0, "subscribe_events": 0, "proxy_restarts": 0,
                         "memory_returned": 0}
        self._router_snapshot: dict[str, Any] = {}
        #: Gaps of this process's subscribers plus those other processes reported (``middleware.report_gaps``).
        self.gap_reports = GapReports()
        self.failure: BaseException | None = None
        self._uid = f"{id(self)}"
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()

    def _socket(self, kind: int) -> zmq.Socket:
        return router_socket(self.ctx, kind, self.bus, self._secure)

    def bind(self) -> dict[str, list[str]]:
        """Create and bind the XSUB and XPUB sockets; returns the bound addresses."""
        self._xsub = self._socket(zmq.XSUB)
        self._xsub.maxmsgsize = self.bus.max_publish_size
        self._xpub = self._socket(zmq.XPUB)
        self._xpub.sndhwm = self.subscriber_hwm
        bind_all(self._xsub, self.sub_addrs, "publish", self.bound["sub"])
        bind_all(self._xpub, self.pub_addrs, "subscribe", self.bound["pub"])
        if self.bus.count_all_topics:
            self._xsub.send(b"\x01")  # subscribe to everything: publishers send the router every topic
        return self.bound

    @property
    def subscriber_hwm(self) -> int:
        """Messages queued at most for one subscriber: ``subscriber_queue_bytes ÷ max_publish_size``
        (capped by ``hwm``), so a subscriber that never reads pins at most ``subscriber_queue_bytes``."""
        return max(1, min(self.bus.hwm, self.bus.subscriber_queue_bytes // self.bus.max_publish_size))

    def start(self) -> None:
        """Start the proxy thread and the monitor thread."""
        tune_allocator()
        uid = self._uid
        queue = min(self.MONITOR_HWM, self.subscriber_hwm)
        self._mon = self.ctx.socket(zmq.SUB)
        self._mon.linger = 0
        self._mon.setsockopt(zmq.SUBSCRIBE, b"")
        self._capture: zmq.Socket | None = None
        self._upstream: zmq.Socket | None = None
        if self.bus.count_all_topics:
            # A tap, not the proxy's capture: the monitor is one more subscriber of everything on
            # the XPUB, so libzmq hands it each message as one more pipe of the same send and drops
            # it there (a bounded queue) when the monitor is behind. A capture socket costs the
            # proxy thread a full socket send per frame (measured ~0.9 us a message of its ~2.4).
            # Subscriptions are seen from above the XSUB: an XPUB connected to it as a publisher
            # receives every subscription the router forwards upstream.
            self._xpub.bind(f"inproc://aitrados-pubsub-tap-{uid}")
            self._xsub.bind(f"inproc://aitrados-pubsub-upstream-{uid}")
            self._mon.rcvhwm = queue
            self._mon.connect(f"inproc://aitrados-pubsub-tap-{uid}")
            self._upstream = self.ctx.socket(zmq.XPUB)
            self._upstream.linger = 0
            self._upstream.setsockopt(zmq.XPUB_VERBOSER, 1)  # every subscribe and unsubscribe
            self._upstream.connect(f"inproc://aitrados-pubsub-upstream-{uid}")
        else:
            # Nothing may subscribe to everything here, so the monitor reads the proxy's capture:
            # what was forwarded (topics someone subscribes to) and the subscriptions.
            self._capture = self.ctx.socket(zmq.PUB)
            self._capture.linger = 0
            self._capture.sndhwm = queue
            self._capture.bind(f"inproc://aitrados-capture-{uid}")
            self._mon.rcvhwm = self.MONITOR_HWM
            self._mon.connect(f"inproc://aitrados-capture-{uid}")
        self._ctrl = self.ctx.socket(zmq.PAIR)
        self._ctrl.bind(f"inproc://aitrados-pubsub-ctrl-{uid}")
        self._wake = self.ctx.socket(zmq.PULL)  # stop() wakes the monitor from its idle poll
        self._wake.linger = 0
        self._wake.bind(f"inproc://aitrados-pubsub-wake-{self._uid}")
        self._threads = [
            threading.Thread(target=self._proxy, name="aitrados-pubsub-proxy", daemon=True),
            threading.Thread(target=self._monitor, name="aitrados-pubsub-monitor", daemon=True),
        ]
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the proxy, stop the monitor and close every socket."""
        if not self._threads:
            for s in (getattr(self, "_xsub", None), getattr(self, "_xpub", None)):
                if s is not None:
                    s.close(0)
            return
        self._stop.set()
        c = self.ctx.socket(zmq.PAIR)
        c.linger = 0
        c.connect(f"inproc://aitrados-pubsub-ctrl-{self._uid}")
        c.send(b"TERMINATE")
        w = self.ctx.socket(zmq.PUSH)
        w.linger = 0
        w.connect(f"inproc://aitrados-pubsub-wake-{self._uid}")
        try:
            w.send(b"", zmq.NOBLOCK)  # without it the monitor sees the stop only when its poll times out
        except zmq.Again:
            pass  # the monitor saw the stop already and closed its end
        for t in self._threads:
            t.join(timeout)
        w.close()
        c.close()
        self._threads = []

    @property
    def alive(self) -> bool:
        """True while both router threads run."""
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    def _proxy(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    zmq.proxy_steerable(self._xsub, self._xpub, self._capture, self._ctrl)
                    return  # TERMINATE from stop()
                except zmq.Again:
                    # libzmq's proxy gives up when a send would block, e.g. when a subscriber
                    # pushes non-subscription junk upstream until a high-water mark is reached.
                    # The sockets are intact: count it and forward again.
                    self.counters["proxy_restarts"] += 1
                    if self.counters["proxy_restarts"] in (1, 10, 100, 1000):
                        logger.warning("pub/sub proxy hit a full queue and was restarted ({} time(s)); "
                                       "a peer is flooding it or not reading", self.counters["proxy_restarts"])
        except zmq.ContextTerminated:
            pass
        except BaseException as exc:
            self.failure = exc
            logger.exception("pub/sub router stopped by an internal error: {}", exc)
        finally:
            uid = self._uid  # (the tap and upstream names are not bound in capture mode: skipped)
            unbind_inproc(self._xsub, [*self.bound["sub"], f"inproc://aitrados-pubsub-upstream-{uid}"])
            unbind_inproc(self._xpub, [*self.bound["pub"], f"inproc://aitrados-pubsub-tap-{uid}"])
            for s in (self._xsub, self._xpub, self._capture, self._ctrl):
                if s is not None:
                    s.close(0)

    def _monitor(self) -> None:
        mon, upstream = self._mon, self._upstream
        observe = self.stats.observe
        valid: set[bytes] = set()  # topics validated once (bounded: cleared with the stats' cap)
        next_tick = time.monotonic() + 1.0
        left = False  # a subscription went away since the last tick: its queue may have been freed
        poller = zmq.Poller()
        poller.register(mon, zmq.POLLIN)
        poller.register(self._wake, zmq.POLLIN)
        if upstream is not None:
            poller.register(upstream, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                # Wake at most every MONITOR_PERIOD, never per message: the monitor shares the GIL
                # with the RPC router and the services, so it must not take it for every message.
                # What queues meanwhile beyond the tap's (or capture's) high-water mark is dropped
                # in C; counts stay exact because they come from sequence numbers.
                ready = dict(poller.poll(self.MONITOR_IDLE_POLL_MS))
                if upstream is not None and upstream in ready:
                    for _ in range(1000):
                        try:
                            left = self._subscription_event(upstream.recv_multipart(_NOBLOCK)) or left
                        except zmq.Again:
                            break
                if mon in ready:
                    now = time.monotonic()
                    # Only the newest sequence number per (topic, publisher) of a batch matters to the
                    # counts: the batch is folded in C, and observe runs once per pair, not per message.
                    n, newest, others, bad = _sample(mon, self.MONITOR_BATCH, valid, P.valid_topic)
                    if bad:
                        self.counters["malformed"] += bad
                    for (topic, pid), seq in newest.items():
                        observe(topic, pid, seq, now)
                    for frames in others:  # from the capture: subscriptions too
                        left = self._subscription_event(frames) or left
                    if len(valid) > self.stats.max_topics:  # bounded: checked again after a clear
                        valid.clear()
                    self.counters["sampled"] += n
                    self._stop.wait(self.MONITOR_PERIOD)
                now = time.monotonic()
                if now >= next_tick:
                    self.stats.tick(now)
                    if left:
                        left = False
                        if return_freed_memory():
                            self.counters["memory_returned"] += 1
                    self._router_snapshot = self._make_router_snapshot()
                    next_tick = now + 1.0
        except zmq.ContextTerminated:
            pass
        except BaseException as exc:
            self.failure = exc
            logger.exception("pub/sub monitor stopped by an internal error: {}", exc)
        finally:
            mon.close(0)
            if upstream is not None:
                upstream.close(0)
            self._wake.close(0)

    def _subscription_event(self, frames: list[bytes]) -> bool:
        """Account a subscribe (``\\x01prefix``) or unsubscribe (``\\x00prefix``) the router forwarded
        upstream; anything else is counted as malformed. Returns True when a prefix lost its last
        subscriber (its queue may have been freed)."""
        if len(frames) != 1 or frames[0][:1] not in (b"\x00", b"\x01"):
            self.counters["malformed"] += 1
            return False
        prefix = frames[0][1:]
        if self._upstream is not None and prefix == b"":
            # The router's own subscription to everything (the tap's and count_all_topics'); a
            # client's subscription to everything is merged into it by libzmq and not seen.
            return False
        self.counters["subscribe_events"] += 1
        count = self.subscriptions.get(prefix, 0) + (1 if frames[0][0] == 1 else -1)
        if count > 0:
            self.subscriptions[prefix] = count
            return False
        self.subscriptions.pop(prefix, None)
        return True

    def _make_router_snapshot(self) -> dict[str, Any]:
        subs = self.subscriptions
        listed = dict(list(subs.items())[:MAX_LISTED_SUBSCRIPTIONS])
        return {
            **self.counters,
            "topics": len(self.stats.topics),
            "topics_untracked": self.stats.untracked,
            "topics_expired": self.stats.expired,
            "count_all_topics": self.bus.count_all_topics,
            "subscriptions": {k.decode("utf-8", "replace"): v for k, v in listed.items()},
            "subscriptions_total": len(subs),
            # messages subscribers missed, by topic prefix: this process's and those reported (see .gaps)
            "gaps": self.gap_reports.totals(),
            "bound": self.bound,
        }

    def topics_encoded(self) -> msgspec.Raw:
        """``{topic: {count, publishers, rate}}`` as of the monitor's last tick, already encoded.

        O(1): the monitor thread builds it about once a second, so the RPC router never walks
        the topics. ``rate`` is messages per second over the last tick.
        """
        return self.stats.encoded()

    def router_stats(self) -> dict[str, Any]:
        """The router's own counters as of the monitor's last tick (bounded in size)."""
        return self._router_snapshot or self._make_router_snapshot()

    def topic_stats(self) -> dict[str, Any]:
        """Per-topic statistics decoded, plus the router's counters under ``_router`` (for in-process use)."""
        return {**self.stats.snapshot(), "_router": self.router_stats()}


# ======================================================================== publisher
def _connect(sock: zmq.Socket, address: str, bus: BusSettings | None) -> None:
    if bus is not None:
        from .security import apply_client

        apply_client(sock, bus, address)
    sock.connect(address)


class Publisher:
    """Publishes objects on topics through the router, stamping per-topic sequence numbers.

    Not thread-safe: use one publisher per thread. Inside :meth:`batch` messages are held and sent
    together (a burst wakes the router once, not once per message).

    :param address: the router's publish address (``Endpoints.publish``)
    :param bus: bus settings (CURVE keys, high-water mark); optional
    :param context: ZeroMQ context; the process-wide one by default (needed for inproc)
    """

    def __init__(self, address: str, *, bus: BusSettings | None = None, context: zmq.Context | None = None,
                 hwm: int | None = None) -> None:
        self.address = address
        self._sock = (context or zmq.Context.instance()).socket(zmq.PUB)
        self._sock.linger = 500
        self._sock.sndhwm = hwm or (bus.hwm if bus else 100_000)
        #: Largest body this publisher sends (``bus.max_publish_size``); the router drops larger ones.
        self.max_size = bus.max_publish_size if bus else BusSettings().max_publish_size
        _connect(self._sock, address, bus)
        self.publisher_id = os.urandom(8)
        #: topic -> [its frame (UTF-8 bytes, validated), its last sequence number]: one lookup a message
        self._topics: dict[str, list[Any]] = {}
        self._pack = P.META.pack
        #: Messages held by :meth:`batch` (None outside one), in publishing order.
        self._held: list[tuple[bytes, bytes, bytes]] | None = None
        self._depth = 0

    def _topic(self, topic: str) -> list[Any]:
        t = topic.encode("utf-8")
        if not P.valid_topic(t):
            raise ValueError(f"invalid topic {topic!r}: 1..{P.MAX_TOPIC} UTF-8 bytes, no spaces, dotted (e.g. ohlc.STOCK:US:SPX.DAY)")
        state = self._topics[topic] = [t, 0]
        return state

    #: Messages a batch holds at most; the next one sends them (bounds its memory and its delay).
    BATCH_MAX = 1024

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Hold every message published inside and send them together, in publishing order, when
        the outermost batch ends (also when it ends by an exception: their sequence numbers are taken).

        For a burst, such as the market-data hub's bars of one time step: the router's proxy thread
        wakes for the burst instead of for every message (measured at 100 symbols: 3.5 s of its CPU
        for 784,000 messages sent one by one, 0.55 s in bursts). Nothing is held longer than the
        batch, and at most ``BATCH_MAX`` messages; call :meth:`flush` before waiting on anything slow.
        """
        if self._depth == 0:
            self._held = []
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                try:
                    self.flush()
                finally:
                    self._held = None

    @property
    def held(self) -> int:
        """Messages the current batch holds, not sent yet (0 outside a batch)."""
        return len(self._held) if self._held is not None else 0

    def flush(self) -> None:
        """Send what the current batch holds now, in one call (the C version releases the GIL while
        libzmq copies the batch); nothing to do outside a batch."""
        held = self._held
        if held:
            self._held = []
            send_many(self._sock, held)

    def publish(self, topic: str, obj: Any) -> int:
        """Encode *obj* (msgpack) and publish it on *topic*; returns its sequence number."""
        return self.publish_raw(topic, P.encode(obj))

    def publish_raw(self, topic: str, body: bytes) -> int:
        """Publish an already encoded body on *topic*; returns its sequence number.

        :raises ValueError: for an invalid topic or a body over ``max_size`` bytes (nothing is sent)
        """
        if len(body) > self.max_size:
            raise ValueError(f"message on {topic!r} is {len(body)} bytes, over bus.max_publish_size "
                             f"({self.max_size}); send a reference or split it, or raise the setting "
                             "(AITRADOS_BUS__MAX_PUBLISH_SIZE) on the middleware and its peers")
        state = self._topics.get(topic) or self._topic(topic)
        seq = state[1] = state[1] + 1
        meta = self._pack(_META_VERSION, self.publisher_id, seq)
        held = self._held
        if held is not None:
            if body.__class__ is not bytes:
                body = bytes(body)  # sent later: a copy the caller cannot change meanwhile
            held.append((state[0], meta, body))
            if len(held) >= self.BATCH_MAX:
                self.flush()
            return seq
        send_frames(self._sock, (state[0], meta, body))
        return seq

    def close(self) -> None:
        """Close the socket (pending messages get up to 0.5 s to leave); what a batch holds is sent first."""
        held, self._held = self._held, None
        try:
            if held:
                send_many(self._sock, held)
        finally:
            self._sock.close()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ======================================================================== subscribers
class Message(msgspec.Struct, gc=False):
    """One received message: topic, its sequence number, the publisher's id and the data."""

    topic: str
    seq: int
    publisher: bytes
    data: Any


class SubscriberStats(msgspec.Struct):
    """What a subscriber saw: messages, gaps (events), missed (messages) and malformed."""

    received: int = 0
    gaps: int = 0
    missed: int = 0
    out_of_order: int = 0
    malformed: int = 0


class _Tracker:
    """Reads published messages off a SUB socket, validates them and tracks sequence numbers per
    (publisher, topic)."""

    def __init__(self) -> None:
        self.stats = SubscriberStats()
        self.last: dict[tuple[bytes, bytes], int] = {}
        self.gaps_by_topic: dict[str, int] = {}
        self._topics: dict[bytes, str] = {}

    def read(self, sock: zmq.Socket, flags: int, decode: bool) -> Message | None:
        """Receive one message from *sock* and return it, or None (counted) if what arrived was malformed.

        Raises ``zmq.Again`` when *flags* has ``NOBLOCK`` and nothing is waiting.

        The protocol's messages have exactly three frames, so this reads three and asks libzmq for
        "more" only on the third (``Frame.more``; pyzmq's ``RCVMORE`` getsockopt per frame cost more
        than the three receives together). A message of other length is still found: libzmq
        delivers a message's frames all at once, so a shorter one ends in ``zmq.Again`` or leaves the
        third frame with more to come, and a longer one leaves more after the third. Then the
        frames are read to the end of the message in progress and its last three are taken: if
        they are a valid message it is a whole message of a well-behaved publisher (its frames
        cannot be split), and whatever came before it is counted as malformed. What a misbehaving
        peer can forge this way it could have sent as one valid message anyway.
        """
        tb = _recv(sock, flags)
        try:
            meta = _recv(sock, _NOBLOCK)
            last = _recv(sock, _NOBLOCK, False)
        except zmq.Again:  # a message of one or two frames, and nothing after it yet
            self.stats.malformed += 1
            return None
        if last.more:
            frames = [tb, meta, last.bytes]
            while last.more:
                last = _recv(sock, _NOBLOCK, False)
                frames.append(last.bytes)
            # At least four frames: the ones before the last three are malformed, whatever those are.
            self.stats.malformed += 1
            tb, meta, body = frames[-3:]
            if len(meta) != _META_SIZE or meta[0] != _META_VERSION:
                return None  # all of it malformed: counted once above
            return self.track(tb, meta, body, decode)
        return self.track(tb, meta, last.bytes, decode)

    def read_batch(self, sock: zmq.Socket, limit: int, decode: bool, out: deque[Message]) -> int:
        """Receive up to *limit* messages waiting on *sock* without blocking and append the valid
        ones to *out*; returns how many were received (malformed ones included, counted).

        With the C extension one call receives the batch (each message whole, so a malformed one
        is exactly one message); otherwise ``read`` is called until ``zmq.Again``."""
        if _track is not None:
            batch = recv_messages(sock, limit, -1, DRAIN_BYTES)
            n = len(batch)
            i = 0
            got: list[Message] = []
            decoder = _decode_body if decode else None
            while i < n:
                # the common case in C (a known topic, the next sequence number); anything else (a new
                # topic, a gap, a malformed message) takes ``process``, which counts it itself
                before = len(got)
                i = _track(batch, i, self._topics, self.last, decoder, _DecodeError, Message, got)
                self.stats.received += len(got) - before
                if i < n:
                    m = self.process(batch[i], decode)
                    if m is not None:
                        got.append(m)
                    i += 1
            out.extend(got)
            return n
        read = self.read
        n = 0
        while n < limit:
            try:
                m = read(sock, _NOBLOCK, decode)
            except zmq.Again:
                break
            n += 1
            if m is not None:
                out.append(m)
        return n

    def process(self, frames: list[bytes], decode: bool = True) -> Message | None:
        """Return the message in *frames* (one whole multipart message), or None (counted) if malformed."""
        if len(frames) != 3:
            self.stats.malformed += 1
            return None
        return self.track(frames[0], frames[1], frames[2], decode)

    def track(self, tb: bytes, meta: bytes, body: bytes, decode: bool) -> Message | None:
        """Validate and decode one message's three frames and account its sequence number; returns the
        message, or None (counted as malformed)."""
        st = self.stats
        if len(meta) != _META_SIZE or meta[0] != _META_VERSION:
            st.malformed += 1
            return None
        topic = self._topics.get(tb)
        if topic is None:
            if not P.valid_topic(tb):
                st.malformed += 1
                return None
            topic = self._topics[tb] = tb.decode("utf-8")
        _, pid, seq = _unpack_meta(meta)
        if decode:
            try:
                data = _decode_body(body)
            except _DecodeError:
                st.malformed += 1
                return None
        else:
            data = body
        key = (pid, tb)
        last = self.last.get(key)
        if last is not None and seq != last + 1:
            if seq > last:
                st.gaps += 1
                st.missed += seq - last - 1
                self.gaps_by_topic[topic] = self.gaps_by_topic.get(topic, 0) + seq - last - 1
                LEDGER.record(topic, seq - last - 1)
                logger.warning("gap on topic {}: {} message(s) missed (seq {} after {})", topic, seq - last - 1, seq, last)
            else:
                st.out_of_order += 1
        self.last[key] = seq if last is None or seq > last else last
        st.received += 1
        return Message(topic, seq, pid, data)


def _call_handler(handler: Callable[[Message], Any], m: Message, owner: Any) -> Any:
    try:
        return handler(m)
    except Exception as exc:
        owner.handler_errors += 1
        logger.exception("subscriber handler failed on topic {}: {}", m.topic, exc)
        return None


class _SubscriberBase:
    """What both subscribers share: the SUB socket's setup, sequence tracking and subscriptions."""

    _sock: Any

    def _setup(self, sock: Any, address: str, prefixes: Iterable[str], bus: BusSettings | None,
               hwm: int | None, decode: bool) -> None:
        self.address = address
        self._sock = sock
        sock.linger = 0
        sock.rcvhwm = hwm or (bus.hwm if bus else 100_000)
        _connect(sock, address, bus)
        self._tracker = _Tracker()
        self._decode = decode
        self.handler_errors = 0
        for p in prefixes:
            self.subscribe(p)

    @property
    def stats(self) -> SubscriberStats:
        """Counters of received, missed and malformed messages."""
        return self._tracker.stats

    def gaps_by_topic(self) -> dict[str, int]:
        """Messages missed so far (sequence gaps), by topic: a copy."""
        return dict(self._tracker.gaps_by_topic)

    def subscribe(self, prefix: str) -> None:
        """Receive topics starting with *prefix*."""
        self._sock.setsockopt(zmq.SUBSCRIBE, prefix.encode("utf-8"))

    def unsubscribe(self, prefix: str) -> None:
        """Stop receiving topics starting with *prefix*."""
        self._sock.setsockopt(zmq.UNSUBSCRIBE, prefix.encode("utf-8"))


class Subscriber(_SubscriberBase):
    """Receives messages whose topics start with any of *prefixes* (synchronous).

    :param address: the router's subscribe address (``Endpoints.subscribe``)
    :param prefixes: topic prefixes; ``""`` means everything
    :param decode: decode bodies (msgpack); False hands raw bytes in ``Message.data``
    """

    def __init__(self, address: str, prefixes: Iterable[str] = (), *, bus: BusSettings | None = None,
                 context: zmq.Context | None = None, hwm: int | None = None, decode: bool = True) -> None:
        self._setup((context or zmq.Context.instance()).socket(zmq.SUB), address, prefixes, bus, hwm, decode)
        self._wait = [(self._sock, int(zmq.POLLIN))]
        self._buf: deque[Message] = deque()

    #: Messages taken off the socket per read while they are queued (received and checked in one
    #: batch, handed out one by one).
    BATCH = 256

    def recv(self, timeout: float | None = None) -> Message | None:
        """The next valid message, or None when *timeout* seconds pass without one."""
        buf = self._buf
        if buf:
            return buf.popleft()
        sock = self._sock
        read_batch = self._tracker.read_batch
        decode = self._decode
        deadline = None
        while True:
            # fast path: no poll while messages are queued
            if read_batch(sock, self.BATCH, decode, buf):
                if buf:
                    return buf.popleft()
                continue  # only malformed ones: read on
            if timeout is None:
                zmq_poll(self._wait, -1)
                continue
            if deadline is None:
                deadline = time.monotonic() + timeout
            remaining = deadline - time.monotonic()
            # zmq_poll itself: pyzmq's Socket.poll builds a Poller per call
            if remaining <= 0 or not zmq_poll(self._wait, int(remaining * 1000) + 1):
                return None

    def recv_batch(self, timeout: float | None = None) -> list[Message]:
        """Every valid message waiting (at least one, at most about ``BATCH``), in order; an empty
        list when *timeout* seconds pass without one. For throughput consumers: one call per batch
        instead of one per message."""
        buf = self._buf
        if not buf:
            m = self.recv(timeout)  # waits, then reads a batch into the buffer and hands out its first
            if m is None:
                return []
            buf.appendleft(m)
        out = list(buf)
        buf.clear()
        return out

    def run(self, handler: Callable[[Message], Any], stop: threading.Event | None = None) -> None:
        """Call *handler* for every message until *stop* is set (checked every 0.2 s).

        A handler that raises is logged with the topic and counted in ``handler_errors``; the
        next message is still delivered.
        """
        stop = stop or threading.Event()
        while not stop.is_set():
            m = self.recv(timeout=0.2)
            if m is not None:
                _call_handler(handler, m, self)

    def start(self, handler: Callable[[Message], Any]) -> threading.Event:
        """Run *handler* on every message in a daemon thread; set the returned event to stop it.

        The socket then belongs to that thread: do not call ``recv`` yourself.
        """
        stop = threading.Event()
        threading.Thread(target=self.run, args=(handler, stop), name="aitrados-subscriber", daemon=True).start()
        return stop

    def close(self) -> None:
        """Close the socket."""
        self._sock.close(0)

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncSubscriber(_SubscriberBase):
    """Asyncio twin of ``Subscriber``: ``await recv()`` or ``async for msg in sub``.

    After one awaited wake-up it drains every waiting message without blocking.
    """

    def __init__(self, address: str, prefixes: Iterable[str] = (), *, bus: BusSettings | None = None,
                 context: zmq.Context | None = None, hwm: int | None = None, decode: bool = True) -> None:
        ctx = zmq.asyncio.Context.shadow(context or zmq.Context.instance())
        self._buf: deque[Message] = deque()
        self._setup(ctx.socket(zmq.SUB), address, prefixes, bus, hwm, decode)
        self._sync = zmq.Socket.shadow(self._sock.underlying)

    async def recv(self, timeout: float | None = None) -> Message | None:
        """The next valid message, or None after *timeout* seconds without one."""
        buf = self._buf
        while not buf:
            if timeout is not None:
                try:
                    frames = await asyncio.wait_for(self._sock.recv_multipart(), timeout)
                except asyncio.TimeoutError:
                    return None
            else:
                frames = await self._sock.recv_multipart()
            tracker, decode = self._tracker, self._decode
            m = tracker.process(frames, decode)
            if m is not None:
                buf.append(m)
            while tracker.read_batch(self._sync, Subscriber.BATCH, decode, buf):
                pass  # drain until nothing waits, so the descriptor signals the next arrival
        return buf.popleft()

    async def run(self, handler: Callable[[Message], Any]) -> None:
        """Call *handler* (plain or async) for every message until cancelled; errors are logged and counted."""
        while True:
            m = await self.recv()
            if m is None:
                continue
            r = _call_handler(handler, m, self)
            if inspect.isawaitable(r):
                try:
                    await r
                except Exception as exc:
                    self.handler_errors += 1
                    logger.exception("subscriber handler failed on topic {}: {}", m.topic, exc)

    def __aiter__(self) -> AsyncSubscriber:
        return self

    async def __anext__(self) -> Message:
        m = await self.recv()
        assert m is not None
        return m

    def close(self) -> None:
        """Close the socket."""
        self._sock.close(0)
