"""The compat gateway's security and robustness: loopback only without CURVE, the secret key, and
random official frames on all four sockets (counted, never fatal)."""

from __future__ import annotations

import json
import random
import time

import pytest
import zmq

pytest.importorskip("aitrados_api")

from aitrados.bus.security import SecurityError
from aitrados.middleware import Middleware
from aitrados_plugins.aitrados_compat import CompatGateway, CompatSettings

from compat_peers import free_ports, start_gateway

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def gw_factory(mw: Middleware, ipc_dir: str):
    made: list[CompatGateway] = []

    def make(**over: object) -> CompatGateway:
        g = start_gateway(mw, ipc_dir, **over)
        made.append(g)
        return g

    yield make
    for g in made:
        g.stop()


def request(port: int, frames: list[bytes], timeout: float = 10.0) -> list[bytes]:
    """One official REQ round trip (frames as FrontendRequest sends them)."""
    ctx = zmq.Context()
    s = ctx.socket(zmq.REQ)
    s.linger = 0
    s.rcvtimeo = int(timeout * 1000)
    s.connect(f"tcp://127.0.0.1:{port}")
    try:
        s.send_multipart(frames)
        return s.recv_multipart()
    finally:
        s.close(0)
        ctx.term()


def test_refuses_a_non_loopback_bind_without_curve(mw: Middleware) -> None:
    with pytest.raises(SecurityError, match="CURVE"):
        CompatGateway(CompatSettings(host="0.0.0.0"), mw.endpoints(), mw.bus, mw.context)


def test_secret_key_is_checked_when_configured(gw_factory) -> None:
    g = gw_factory(secret_key="s3cret-key")
    port = g.settings.frontend_port
    params = json.dumps({"args": [], "kwargs": {}}).encode()
    bad = request(port, [b"aitrados_api", b"get_all_online_backend_services", params, b"wrong"])
    assert json.loads(bad[2])["status"] == "invalid_secret_key"
    none = request(port, [b"aitrados_api", b"get_all_online_backend_services", params])
    assert json.loads(none[2])["status"] == "invalid_secret_key"
    good = request(port, [b"aitrados_api", b"get_all_online_backend_services", params, b"s3cret-key"])
    assert json.loads(good[2])["status"] == "ok"
    assert g.stats["rejected_key"] == 2


def test_fuzzed_official_frames_are_counted_and_never_kill_the_gateway(gw_factory) -> None:
    g = gw_factory()
    s = g.settings
    rng = random.Random(1234)
    ctx = zmq.Context()
    socks = []
    try:
        for kind, port in ((zmq.DEALER, s.frontend_port), (zmq.DEALER, s.backend_port), (zmq.PUB, s.sub_port),
                           (zmq.XSUB, s.pub_port)):
            k = ctx.socket(kind)
            k.linger = 0
            k.sndtimeo = 1000
            k.connect(f"tcp://127.0.0.1:{port}")
            socks.append(k)
        for i in range(400):
            sock = socks[i % 4]
            frames = [rng.randbytes(rng.randint(0, 40)) for _ in range(rng.randint(1, 8))]
            if rng.random() < 0.3:
                frames = [b"", *frames]
            try:
                sock.send_multipart(frames, zmq.NOBLOCK)
            except zmq.Again:
                pass
        deadline = time.monotonic() + 20
        while g.stats["malformed"] == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert g.stats["malformed"] > 0
    finally:
        for k in socks:
            k.close(0)
        ctx.term()
    assert g.failure is None and all(t.is_alive() for t in g._threads)
    params = json.dumps({"args": [], "kwargs": {}}).encode()
    ok = request(s.frontend_port, [b"aitrados_api", b"get_all_online_backend_services", params])
    assert json.loads(ok[2])["status"] == "ok"


def test_official_input_that_json_or_msgpack_cannot_take_is_counted_not_fatal(gw_factory, mw: Middleware) -> None:
    """Params nested deeper than the JSON parser goes, and a publish whose integer msgpack cannot
    carry: each is answered or counted, and both gateway threads live on."""
    g = gw_factory()
    s = g.settings
    deep = b'{"args": ' + b"[" * 200_000 + b"]" * 200_000 + b', "kwargs": {}}'
    reply = request(s.frontend_port, [b"aitrados_api", b"a_get_all_subscribed_topics", deep])
    assert json.loads(reply[2])["status"] == "error"
    native = mw.subscriber(["compat.on_big"])
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.linger = 0
    pub.connect(f"tcp://127.0.0.1:{s.sub_port}")
    seen = []
    try:
        before = g.stats["malformed"]

        def one() -> bool:
            pub.send_multipart([b"on_big", b'{"n": 123456789012345678901234567890}'])  # > 2**64: not msgpack
            pub.send_multipart([b"on_big", b'{"n": 1}'])
            m = native.recv(timeout=0.1)
            if m is not None:
                seen.append(m)
            return bool(seen) and g.stats["malformed"] > before

        deadline = time.monotonic() + 20
        while not one() and time.monotonic() < deadline:
            pass
        assert seen and seen[0].data == {"n": 1} and g.stats["malformed"] > before
    finally:
        pub.close(0)
        ctx.term()
        native.close()
    assert g.failure is None and all(t.is_alive() for t in g._threads)


def test_a_gateway_thread_that_dies_is_the_middleware_failure(mw: Middleware, ipc_dir: str) -> None:
    """A thread of a watched gateway dies (here: the native bus address it subscribes to is not a
    ZeroMQ address): ``Middleware.failure`` is its error and ``wait()`` returns 1 at once."""
    import dataclasses

    f, b, s, p = free_ports(4)
    cfg = CompatSettings(frontend_port=f, backend_port=b, sub_port=s, pub_port=p, enable_ipc=False)
    bad = dataclasses.replace(mw.endpoints(), subscribe="not-a-transport://x")
    gw = CompatGateway(cfg, bad, mw.bus, mw.context)
    mw.watch(gw)
    assert mw.failure is None
    with pytest.raises(RuntimeError, match="did not start"):
        gw.start(timeout=20)
    assert isinstance(mw.failure, zmq.ZMQError) and mw.failure is gw.failure
    assert mw.wait(install_signals=False) == 1
    with pytest.raises(TypeError, match="failure"):
        mw.watch(object())
