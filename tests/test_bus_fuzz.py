"""Fuzz: random and hostile frames at both routers; afterwards normal calls still work."""

from __future__ import annotations

import random
import time

import pytest
import zmq

from aitrados.bus import RemoteError, Service
from aitrados.bus import protocol as P
from aitrados.middleware import Middleware

from conftest import bus_settings

pytestmark = pytest.mark.timeout(90)

TAGS = [P.CLIENT_TAG, P.WORKER_TAG, b"", b"ATC9", b"\x00" * 4]
CMDS = [P.REQUEST, P.REPLY, P.ERROR, P.READY, P.HEARTBEAT, P.DISCONNECT, b"\x00", b"\xff", b""]


def random_frame(rng: random.Random) -> bytes:
    kind = rng.randrange(7)
    if kind == 0:
        return rng.choice(TAGS)
    if kind == 1:
        return rng.choice(CMDS)
    if kind == 2:
        return rng.randbytes(rng.randrange(0, 40))
    if kind == 3:
        return b"\xff\xfe\xfd"  # not UTF-8
    if kind == 4:
        return P.encode(rng.choice([{"method": "ping"}, {"method": 5}, [1, 2], "x", {"params": 3}]))
    if kind == 5:
        return "middleware".encode() if rng.random() < 0.5 else b"svc"
    return rng.randbytes(rng.randrange(300, 3000))


def random_message(rng: random.Random) -> list[bytes]:
    n = rng.randrange(1, 9)
    frames = [random_frame(rng) for _ in range(n)]
    if rng.random() < 0.4 and n >= 2:  # plausible headers reach deeper branches
        frames[0] = rng.choice([P.CLIENT_TAG, P.WORKER_TAG])
        frames[1] = rng.choice(CMDS)
    return frames


class Echo(Service):
    name = "echo"

    def echo(self, value: object) -> object:
        return value


def test_routers_survive_random_and_hostile_frames(ipc_dir: str) -> None:
    s = bus_settings(ipc_dir, max_message_size=64 * 1024)
    rng = random.Random(20261125)
    with Middleware(s) as mw:
        mw.serve(Echo())
        ctx = zmq.Context.instance()
        ep = mw.endpoints("tcp")
        attackers = []
        for addr, kind in ((ep.rpc_frontend, zmq.DEALER), (ep.rpc_backend, zmq.DEALER),
                           (ep.publish, zmq.PUB), (ep.subscribe, zmq.XSUB)):
            sock = ctx.socket(kind)
            sock.linger = 0
            sock.connect(addr)
            attackers.append(sock)
        # also a ROUTER-assigned identity that is not UTF-8, and one that is
        weird = ctx.socket(zmq.DEALER)
        weird.linger = 0
        weird.routing_id = b"\xff\x00\xfe"
        weird.connect(ep.rpc_frontend)
        attackers.append(weird)
        time.sleep(0.3)
        for i in range(3000):
            sock = attackers[i % len(attackers)]
            try:
                sock.send_multipart(random_message(rng), zmq.NOBLOCK)
            except zmq.Again:
                pass
        # oversized messages: libzmq refuses them at the door (ZMQ_MAXMSGSIZE) and closes that peer
        big = ctx.socket(zmq.DEALER)
        big.linger = 0
        big.connect(ep.rpc_frontend)
        big.send_multipart([P.CLIENT_TAG, P.REQUEST, b"echo", b"id", b"x" * (200 * 1024)])
        c = mw.rpc_client(timeout=5)
        assert c.call("middleware", "ping")["pong"] is True
        assert c.call("echo", "echo", value=[1, "two"]) == [1, "two"]
        deadline = time.monotonic() + 30  # the router may still be draining the storm under load
        while (stats := c.call("middleware", "stats"))["rpc"]["malformed"] <= 100:
            assert time.monotonic() < deadline, stats
            time.sleep(0.1)
        assert mw.failure is None and mw.rpc.alive and mw.pubsub.alive
        # pub/sub still delivers after the storm
        sub = mw.subscriber(["after."])
        pub = mw.publisher()
        deadline = time.monotonic() + 30
        m = None
        while m is None:  # until the subscription has reached the publisher (slow joiner), bounded
            assert time.monotonic() < deadline, "pub/sub delivered nothing after the storm"
            pub.publish("after.fuzz", "still here")
            m = sub.recv(timeout=0.5)
        assert m.data == "still here"
        # and the hostile service names never became services
        services = c.call("middleware", "services")
        assert "middleware" not in services
        for name in services:
            assert name.encode().decode("utf-8") == name
        with pytest.raises(RemoteError):
            c.call("echo", "nope")
        for sock in attackers + [big]:
            sock.close()


def test_pubsub_router_survives_upstream_flood_with_small_queues(ipc_dir: str) -> None:
    """Junk pushed upstream by a subscriber fills tiny queues; libzmq's proxy gives up, ours forwards again."""
    rng = random.Random(7)
    with Middleware(bus_settings(ipc_dir, hwm=10)) as mw:
        ep = mw.endpoints("tcp")
        ctx = zmq.Context.instance()
        pub = ctx.socket(zmq.PUB)
        flood = ctx.socket(zmq.XSUB)
        for s, a in ((pub, ep.publish), (flood, ep.subscribe)):
            s.linger = 0
            s.connect(a)
        time.sleep(0.3)
        for i in range(6000):
            try:
                (pub if i % 2 else flood).send_multipart(random_message(rng), zmq.NOBLOCK)
            except zmq.Again:
                pass
        time.sleep(0.5)
        assert mw.failure is None and mw.pubsub.alive
        sub = mw.subscriber(["ok."])
        good = mw.publisher()
        deadline = time.monotonic() + 10
        m = None
        while m is None and time.monotonic() < deadline:  # the junk may still be draining
            good.publish("ok.after", "delivered")
            m = sub.recv(timeout=0.3)
        assert m is not None and m.data == "delivered"
        pub.close()
        flood.close()
