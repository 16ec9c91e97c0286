"""The compat gateway's pub/sub path: official publishes forwarded by libzmq to official
subscribers and, through the capture, once to the native bus; native events to official
subscribers once and never back; what the bridge drops counted; malformed frames counted;
subscriptions up to official publishers; a clean stop. Real sockets over tcp on 127.0.0.1."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import zmq

pytest.importorskip("aitrados_api")

from aitrados.middleware import Middleware
from aitrados_plugins.aitrados_compat import CompatGateway, CompatSettings
from aitrados_plugins.aitrados_compat.proxy import CaptureLoss

from compat_peers import free_ports, start_gateway, wait_for

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def zctx() -> Iterator[zmq.Context]:
    """A private context for the official peers (closed sockets, then terminated)."""
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(0)


@pytest.fixture
def gateway(mw: Middleware) -> Iterator[Any]:
    made: list[CompatGateway] = []

    def make(**over: Any) -> CompatGateway:
        g = start_gateway(mw, **over)
        made.append(g)
        return g

    yield make
    for g in made:
        g.stop()


def official_sub(ctx: zmq.Context, g: CompatGateway, *topics: bytes) -> zmq.Socket:
    """A raw official subscriber (SUB on the gateway's pub port)."""
    s = ctx.socket(zmq.SUB)
    s.linger = 0
    s.rcvhwm = 0
    s.connect(g.settings.tcp(g.settings.pub_port))
    for t in topics:
        s.subscribe(t)
    return s


def official_pub(ctx: zmq.Context, g: CompatGateway) -> zmq.Socket:
    """A raw official publisher (PUB on the gateway's sub port, filtering as official publishers do)."""
    s = ctx.socket(zmq.PUB)
    s.linger = 0
    s.sndhwm = 0
    s.connect(g.settings.tcp(g.settings.sub_port))
    return s


def drain(sock: zmq.Socket, into: list[list[bytes]]) -> None:
    while sock.poll(0):
        into.append(sock.recv_multipart())


def test_an_official_publish_reaches_official_and_native_subscribers_exactly_once(gateway, mw: Middleware,
                                                                                  zctx: zmq.Context) -> None:
    g = gateway()
    sub = official_sub(zctx, g, b"on_sig")
    native = mw.subscriber(["compat.on_sig"])
    pub = official_pub(zctx, g)
    official: list[list[bytes]] = []
    bridged: list[Any] = []

    def pump() -> None:
        drain(sub, official)
        while (m := native.recv(timeout=0.01)) is not None:
            bridged.append(m.data)

    def seqs(bodies: list[Any]) -> Counter[int]:
        return Counter(b["seq"] for b in bodies if b["seq"] >= 0)

    try:
        def joined() -> bool:  # both subscriptions are up (bounded): warm-ups carry seq -1
            pub.send_multipart([b"on_sig", b'{"seq": -1}'])
            pump()
            return bool(official) and bool(bridged)

        wait_for(joined, what="official and native subscribers joined")
        n = 300
        for i in range(n):
            pub.send_multipart([b"on_sig", json.dumps({"seq": i}).encode()])
        pub.send_multipart([b"on_sig", json.dumps({"seq": n}).encode()])  # the end marker, same path, after all

        def ended() -> bool:
            pump()
            return n in seqs([json.loads(f[1]) for f in official]) and n in seqs(bridged)

        wait_for(ended, what="the end marker on both sides")
        pump()
        want = Counter(range(n + 1))
        assert seqs([json.loads(f[1]) for f in official]) == want  # each once, none lost
        assert seqs(bridged) == want
        assert all(len(f) == 2 and f[0] == b"on_sig" for f in official)  # as the official router sends them
        assert g.stats["bridge_lost_frames"] == 0 and g.failure is None
    finally:
        native.close()


def test_a_native_event_reaches_official_subscribers_once_and_is_not_bridged_back(gateway, mw: Middleware,
                                                                                   zctx: zmq.Context) -> None:
    """Native ``mtf.*`` -> official ``on_multi_symbol_multi_timeframe``, each once; the native bus
    never hears it again as ``compat.*`` (it enters past the capture)."""
    g = gateway()
    sub = official_sub(zctx, g, b"on_multi_symbol_multi_timeframe")
    echo = mw.subscriber(["compat."])
    native = mw.publisher()
    pub = official_pub(zctx, g)
    got: list[list[bytes]] = []
    heard: list[Any] = []
    try:
        def joined() -> bool:
            native.publish("mtf.g1", {"n": -1})
            drain(sub, got)
            return bool(got)

        wait_for(joined, what="the official subscriber joined")
        n = 200
        for i in range(n + 1):  # n is the end marker
            native.publish("mtf.g1", {"n": i})

        def ended() -> bool:
            drain(sub, got)
            return any(json.loads(f[1]) == {"n": n} for f in got)

        wait_for(ended, what="the end marker at the official subscriber")
        # A native echo would pass the capture before this official publish does (the capture is
        # one ordered queue and the marker above went through the gateway first): once the
        # sentinel is on the native bus, no echo can be pending.
        def sentinel() -> bool:
            pub.send_multipart([b"on_sentinel", b"{}"])
            while (m := echo.recv(timeout=0.05)) is not None:
                heard.append(m.topic)
            return "compat.on_sentinel" in heard

        wait_for(sentinel, what="an official publish on the native bus")
        drain(sub, got)
        counts = Counter(json.loads(f[1])["n"] for f in got if json.loads(f[1])["n"] >= 0)
        assert counts == Counter(range(n + 1))
        assert set(heard) == {"compat.on_sentinel"}  # no compat.on_multi_symbol_multi_timeframe
        assert g.stats["published_out"] >= n + 1
    finally:
        native.close()
        echo.close()


def test_malformed_official_publishes_are_counted_and_forwarding_goes_on(gateway, mw: Middleware,
                                                                        zctx: zmq.Context) -> None:
    g = gateway()
    native = mw.subscriber(["compat.on_ok"])
    sub = official_sub(zctx, g, b"on_ok")
    pub = official_pub(zctx, g)
    seen: list[Any] = []
    try:
        def joined() -> bool:
            pub.send_multipart([b"on_ok", b'{"n": -1}'])
            while (m := native.recv(timeout=0.05)) is not None:
                seen.append(m.data)
            return bool(seen)

        wait_for(joined, what="the official publisher's subscription")
        wait_for(lambda: g.stats["published_in"] >= 1, what="the warm-up counted")
        before = dict(g.stats)
        for frames in ([b"on_ok"], [b"\xff\xfe", b"{}"], [b"bad topic", b"{}"], [b"on_ok", b'{"n": 1e999999}']):
            pub.send_multipart(frames)
        pub.send_multipart([b"on_ok", b'{"n": 1}'])  # after the bad ones, on the same ordered path

        def arrived() -> bool:
            while (m := native.recv(timeout=0.05)) is not None:
                seen.append(m.data)
            return {"n": 1} in seen

        wait_for(arrived, what="the good publish after the bad ones")
        # the 1-frame message, the non-UTF-8 topic and the topic with a space; the infinite float is
        # valid JSON (Python reads it as inf) and msgpack carries it
        assert g.stats["malformed"] - before["malformed"] == 3
        wait_for(lambda: sub.poll(0), what="official subscriber still served")
        assert g.failure is None and all(t.is_alive() for t in g._threads)
    finally:
        native.close()


@pytest.mark.parametrize("bridge", [False, True])
def test_a_subscription_travels_up_so_a_filtering_official_publisher_delivers(gateway, zctx: zmq.Context,
                                                                              bridge: bool) -> None:
    """Without the bridge the official subscriber's own topic reaches the publisher, which then
    sends that topic only; with it the gateway subscribes to everything itself."""
    g = gateway(bridge_native=bridge)
    publisher = zctx.socket(zmq.XPUB)  # an official publisher (PUB) that also shows what it is told
    publisher.linger = 0
    publisher.connect(g.settings.tcp(g.settings.sub_port))
    sub = official_sub(zctx, g, b"on_only")
    told: list[bytes] = []

    def hears(prefix: bytes) -> bool:
        while publisher.poll(50):
            told.append(publisher.recv())
        return prefix in told

    wait_for(lambda: hears(b"\x01" + (b"" if bridge else b"on_only")), what="the subscription upstream")
    if not bridge:
        assert b"\x01" not in told  # nothing but what official subscribers asked for
    got: list[list[bytes]] = []

    def delivered() -> bool:
        publisher.send_multipart([b"on_other", b"{}"])
        publisher.send_multipart([b"on_only", b"{}"])
        drain(sub, got)
        return bool(got)

    wait_for(delivered, what="delivery through the gateway")
    assert all(f[0] == b"on_only" for f in got)


@pytest.mark.parametrize("bridge", [False, True])
def test_stop_ends_every_thread_and_frees_the_ports(mw: Middleware, zctx: zmq.Context, bridge: bool) -> None:
    f, b, s, p = free_ports(4)
    cfg = CompatSettings(frontend_port=f, backend_port=b, sub_port=s, pub_port=p, enable_ipc=False,
                         bridge_native=bridge)
    g = CompatGateway(cfg, mw.endpoints(), mw.bus, mw.context).start()
    threads = list(g._threads)
    assert len(threads) == (5 if bridge else 2)
    pub = official_pub(zctx, g)
    sub = official_sub(zctx, g, b"")  # connected, never reads
    wait_for(lambda: (pub.send_multipart([b"on_x", b"{}"]), sub.poll(0))[1], what="traffic through the gateway")
    for _ in range(1000):
        pub.send_multipart([b"on_x", b"{}"])
    g.stop(timeout=10)
    assert not any(t.is_alive() for t in threads) and g.failure is None
    again = CompatGateway(cfg, mw.endpoints(), mw.bus, mw.context).start()  # every port is free again
    again.stop()


def test_what_the_bridge_drops_is_counted(gateway, mw: Middleware, zctx: zmq.Context) -> None:
    """A capture queue of one message under a burst: every official publish the gateway received is
    either on the native bus or counted in bridge_lost_frames (2 frames each), never silently gone."""
    g = gateway(bridge_hwm=1)
    pub = official_pub(zctx, g)
    native = mw.subscriber(["compat.on_burst"])
    try:
        def joined() -> bool:
            pub.send_multipart([b"on_burst", b'{"n": -1}'])
            return native.recv(timeout=0.05) is not None

        wait_for(joined, what="the official publisher's subscription")
        for i in range(5000):
            pub.send_multipart([b"on_burst", b'{"n": %d}' % i])

        def settled() -> bool:
            frames_in = g.official_frames_in()
            return frames_in is not None and frames_in >= 2 * 5000 and \
                frames_in == 2 * g.stats["published_in"] + g.stats["bridge_lost_frames"]

        wait_for(settled, timeout=60, what="every received publish bridged or counted lost")
        assert g.stats["malformed"] == 0
    finally:
        native.close()


def test_capture_loss_arithmetic() -> None:
    loss = CaptureLoss()
    loss.read(2)
    loss.read(2)
    assert loss.settle(4) == 0
    assert loss.settle(10) == 6  # 3 messages the queue dropped
    loss.read(2)
    assert loss.settle(10) == 6  # a later read of a newer message never lowers it
    assert loss.settle(2) == 6  # the proxy restarted: its count began again, earlier loss kept
    loss.read(2)
    assert loss.settle(8) == 10
