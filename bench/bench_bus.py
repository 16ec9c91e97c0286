"""Bus benchmark: our routers against raw pyzmq baselines, measured in the same run.

    python bench/bench_bus.py [--quick]

1. RPC sequential round trip (median, p99): client -> router -> echo worker -> back, each in
   its own process. Baseline: a raw ``zmq.proxy(ROUTER, DEALER)`` broker with a DEALER echo
   worker. Ours: the middleware's RPC router with a ServiceWorker. ipc and tcp.
2. Pipelined requests/s from one asyncio client with 256 requests in flight, same pair.
3. Pub/sub: a ~200-byte bar, publisher -> router -> subscriber in separate processes.
   Baseline: PUB -> zmq.proxy(XSUB, XPUB) -> SUB with the same msgpack encoding. Ours:
   Publisher -> the middleware's pub/sub router -> Subscriber (sequence numbers, gap check).
   Reports delivered messages/s and lost messages (ours must detect every loss).

Prints one table with the ratios ours/raw. Absolute numbers drift between runs on a shared
machine; the ratios are what to read.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone

import zmq
import zmq.asyncio

from aitrados.bus import protocol as P

HERE = os.path.abspath(__file__)
BAR = {
    "full_symbol": "CRYPTO:GLOBAL:BTCUSD", "interval": "1M",
    "datetime": datetime(2025, 9, 14, 10, 55, tzinfo=timezone.utc),
    "close_datetime": datetime(2025, 9, 14, 10, 56, tzinfo=timezone.utc),
    "open": 116080.58, "high": 116080.59, "low": 116036.8, "close": 116077.28,
    "volume": 0.15742726, "vwap": 77372.51580908668, "closed": True, "exchange": "GLOBAL",
    "trading_session": "RTH",
}


# ------------------------------------------------------------------ child roles
def role_raw_broker(front: str, back: str) -> None:
    ctx = zmq.Context()
    f = ctx.socket(zmq.ROUTER)
    b = ctx.socket(zmq.DEALER)
    f.bind(front)
    b.bind(back)
    print("ready", flush=True)
    zmq.proxy(f, b)


def role_raw_worker(back: str) -> None:
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.connect(back)
    print("ready", flush=True)
    while True:
        s.send_multipart(s.recv_multipart())


def role_our_router(cfg: str) -> None:
    from aitrados.log import setup_logging
    from aitrados.middleware import Middleware
    from aitrados.settings import load_settings

    setup_logging("WARNING")
    mw = Middleware(load_settings(bus=json.loads(cfg))).start()
    print(json.dumps({t: mw.endpoints(t).__dict__ for t in ("ipc", "tcp")}), flush=True)
    sys.stdin.read()
    mw.stop()


def role_our_worker(back: str) -> None:
    from aitrados.bus import Service, ServiceWorker
    from aitrados.log import setup_logging

    setup_logging("WARNING")

    class Echo(Service):
        name = "echo"

        def echo(self, value: object) -> object:
            return value

    ServiceWorker(Echo(), back).start()
    print("ready", flush=True)
    while True:
        time.sleep(3600)


def role_raw_publisher(addr: str, n: int) -> None:
    ctx = zmq.Context()
    s = ctx.socket(zmq.PUB)
    s.sndhwm = 100_000
    s.connect(addr)
    time.sleep(1.0)
    topic = b"ohlc.CRYPTO:GLOBAL:BTCUSD.1M"
    enc = P.encode
    send = s.send
    more = int(zmq.SNDMORE)
    for _ in range(n):
        send(topic, more)
        send(enc(BAR))
    for _ in range(20):
        time.sleep(0.05)
        s.send_multipart([b"ohlc.END", b"end"])
    time.sleep(0.2)


def role_our_publisher(addr: str, n: int) -> None:
    from aitrados.bus import Publisher

    pub = Publisher(addr)
    time.sleep(1.0)
    publish = pub.publish
    topic = "ohlc.CRYPTO:GLOBAL:BTCUSD.1M"
    for _ in range(n):
        publish(topic, BAR)
    for _ in range(20):  # same topic: a lost tail shows up as a gap before the first "end"
        time.sleep(0.05)
        pub.publish(topic, "end")
    time.sleep(0.2)
    pub.close()


def role_raw_pubsub_proxy(sub_addr: str, pub_addr: str) -> None:
    ctx = zmq.Context()
    xs = ctx.socket(zmq.XSUB)
    xp = ctx.socket(zmq.XPUB)
    xs.rcvhwm = xp.sndhwm = 100_000
    xs.bind(sub_addr)
    xp.bind(pub_addr)
    print("ready", flush=True)
    zmq.proxy(xs, xp)


# ------------------------------------------------------------------ helpers
def spawn(*args: str) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, HERE, "--role", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    return p


def ready(p: subprocess.Popen) -> str:
    assert p.stdout is not None
    return p.stdout.readline().strip()


def stop(*ps: subprocess.Popen) -> None:
    for p in ps:
        p.kill()
        p.wait()


def seq_raw(front: str, n: int) -> list[float]:
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.linger = 0
    s.connect(front)
    body = P.request_body("echo", {"value": 1})
    lat = []
    for i in range(n + 200):
        t = time.perf_counter()
        s.send_multipart([P.CLIENT_TAG, P.REQUEST, b"echo", i.to_bytes(8, "big"), body])
        s.recv_multipart()
        if i >= 200:
            lat.append(time.perf_counter() - t)
    s.close()
    return lat


def seq_ours(front: str, n: int) -> list[float]:
    from aitrados.bus import RPCClient

    c = RPCClient(front, timeout=10)
    lat = []
    for i in range(n + 200):
        t = time.perf_counter()
        c.call("echo", "echo", value=1)
        if i >= 200:
            lat.append(time.perf_counter() - t)
    c.close()
    return lat


async def pipelined_raw(front: str, n: int, window: int = 256) -> float:
    ctx = zmq.asyncio.Context.instance()
    s = ctx.socket(zmq.DEALER)
    s.linger = 0
    s.connect(front)
    body = P.request_body("echo", {"value": 1})
    sent = 0
    t = time.perf_counter()
    for _ in range(window):
        await s.send_multipart([P.CLIENT_TAG, P.REQUEST, b"echo", sent.to_bytes(8, "big"), body])
        sent += 1
    got = 0
    while got < n:
        await s.recv_multipart()
        got += 1
        if sent < n:
            await s.send_multipart([P.CLIENT_TAG, P.REQUEST, b"echo", sent.to_bytes(8, "big"), body])
            sent += 1
    dt = time.perf_counter() - t
    s.close()
    return n / dt


async def pipelined_ours(front: str, n: int, window: int = 256) -> float:
    from aitrados.bus import AsyncRPCClient

    c = AsyncRPCClient(front, timeout=30)
    sem = asyncio.Semaphore(window)

    async def one() -> None:
        async with sem:
            await c.call("echo", "echo", value=1)

    await c.call("echo", "echo", value=0)
    t = time.perf_counter()
    await asyncio.gather(*[one() for _ in range(n)])
    dt = time.perf_counter() - t
    c.close()
    return n / dt


def receive_raw(sub_addr: str, n: int) -> tuple[float, int, int]:
    s = zmq.Context.instance().socket(zmq.SUB)
    s.rcvhwm = 100_000
    s.setsockopt(zmq.SUBSCRIBE, b"ohlc.")
    s.connect(sub_addr)
    got = 0
    t0 = None
    dec = P.decode
    while True:
        if not s.poll(15000):
            break
        topic, body = s.recv_multipart()
        if topic == b"ohlc.END":
            break
        if t0 is None:
            t0 = time.perf_counter()
        dec(body)
        got += 1
    dt = time.perf_counter() - (t0 or time.perf_counter())
    s.close()
    return got / dt if dt else 0.0, got, n - got


def receive_ours(sub_addr: str, n: int) -> tuple[float, int, int, int]:
    from aitrados.bus import Subscriber

    sub = Subscriber(sub_addr, ["ohlc."])
    got = 0
    t0 = None
    first_seq = 1
    while True:
        m = sub.recv(timeout=15)
        if m is None or m.data == "end":
            break
        if t0 is None:
            t0 = time.perf_counter()
            first_seq = m.seq
        got += 1
    dt = time.perf_counter() - (t0 or time.perf_counter())
    missed = sub.stats.missed + (first_seq - 1)  # a head loss shows as a first sequence above 1
    sub.close()
    return got / dt if dt else 0.0, got, n - got, missed


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


# ------------------------------------------------------------------ main
def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run)")
    ap.add_argument("--role", nargs="+")
    a = ap.parse_args()
    if a.role:
        fn = globals()[f"role_{a.role[0]}"]
        fn(*[int(x) if x.isdigit() else x for x in a.role[1:]])
        return
    n_seq = 500 if a.quick else 3000
    n_pipe = 3000 if a.quick else 30000
    n_pub = 20000 if a.quick else 300000
    tmp = tempfile.mkdtemp(prefix="atb-", dir="/tmp")
    rows: list[tuple[str, str, str, str]] = []

    cfg = {"name": "bench", "ipc_dir": tmp, "rpc_frontend_port": 0, "rpc_backend_port": 0, "sub_port": 0, "pub_port": 0}
    ours = spawn("our_router", json.dumps(cfg))
    eps = json.loads(ready(ours))
    worker = None
    try:
        for transport in ("ipc", "tcp"):  # every hop of both setups uses this transport
            if worker is not None:
                stop(worker)
            worker = spawn("our_worker", eps[transport]["rpc_backend"])
            ready(worker)
            rf = f"ipc://{tmp}/raw-front.sock" if transport == "ipc" else "tcp://127.0.0.1:47811"
            rb = f"ipc://{tmp}/raw-back.sock" if transport == "ipc" else "tcp://127.0.0.1:47812"
            broker = spawn("raw_broker", rf, rb)
            ready(broker)
            rw = spawn("raw_worker", rb)
            ready(rw)
            time.sleep(0.3)
            raw_lat = seq_raw(rf, n_seq)
            our_lat = seq_ours(eps[transport]["rpc_frontend"], n_seq)
            rm, om = statistics.median(raw_lat) * 1e6, statistics.median(our_lat) * 1e6
            r99, o99 = pct(raw_lat, 0.99) * 1e6, pct(our_lat, 0.99) * 1e6
            rows.append((f"RPC sequential median ({transport})", f"{rm:.0f} us", f"{om:.0f} us", f"{om / rm:.2f}x (goal <= 1.3x)"))
            rows.append((f"RPC sequential p99 ({transport})", f"{r99:.0f} us", f"{o99:.0f} us", f"{o99 / r99:.2f}x"))
            raw_rps = asyncio.run(pipelined_raw(rf, n_pipe))
            our_rps = asyncio.run(pipelined_ours(eps[transport]["rpc_frontend"], n_pipe))
            rows.append((f"RPC pipelined, 256 in flight ({transport})", f"{raw_rps:,.0f}/s", f"{our_rps:,.0f}/s",
                         f"{our_rps / raw_rps:.2f}x (goal >= 0.5x)"))
            stop(broker, rw)
    finally:
        if worker is not None:
            stop(worker)
        ours.stdin.close()  # type: ignore[union-attr]
        ours.wait(10)

    # pub/sub: fresh router processes so the RPC run leaves nothing behind
    ours = spawn("our_router", json.dumps({**cfg, "name": "benchps"}))
    eps = json.loads(ready(ours))
    raw_sub, raw_pub = f"ipc://{tmp}/raw-xsub.sock", f"ipc://{tmp}/raw-xpub.sock"
    proxy = spawn("raw_pubsub_proxy", raw_sub, raw_pub)
    ready(proxy)
    try:
        pub = spawn("raw_publisher", raw_sub, str(n_pub))
        raw_rate, raw_got, raw_lost = receive_raw(raw_pub, n_pub)
        pub.wait(60)
        pub = spawn("our_publisher", eps["ipc"]["publish"], str(n_pub))
        our_rate, our_got, our_lost, detected = receive_ours(eps["ipc"]["subscribe"], n_pub)
        pub.wait(60)
    finally:
        stop(proxy)
        ours.stdin.close()  # type: ignore[union-attr]
        ours.wait(10)
    rows.append(("pub/sub ~200 B bar, delivered (ipc)", f"{raw_rate:,.0f}/s", f"{our_rate:,.0f}/s",
                 f"{our_rate / raw_rate:.2f}x (goal >= 0.8x)"))
    rows.append(("pub/sub lost / detected", f"{raw_lost} lost, undetectable", f"{our_lost} lost, {detected} detected",
                 "zero undetected" if our_lost == detected else "UNDETECTED LOSS"))
    print(f"\nbody size: {len(P.encode(BAR))} bytes; sequential n={n_seq}, pipelined n={n_pipe}, pub/sub n={n_pub}")
    w = [max(len(r[i]) for r in rows + [("what", "raw", "ours", "ratio")]) for i in range(4)]
    for r in [("what", "raw pyzmq", "aitrados", "ours / raw")] + rows:
        print("  ".join(c.ljust(w[i]) for i, c in enumerate(r)))


if __name__ == "__main__":
    main()
