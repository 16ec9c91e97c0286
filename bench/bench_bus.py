"""Bus benchmark: our routers against the best raw pyzmq reaches, measured in the same run.

    python bench/bench_bus.py [--quick] [--json FILE] [--only rpc|pubsub] [--transport ipc|tcp ...]

Every party runs in its own process, on the same transport as ours. The raw baselines are
written the way a plain pyzmq program reaches its limit (compare the limit scripts kept
beside the project): blocking sockets, one ``send``/``recv`` call per frame (no
``*_multipart`` overhead), NOBLOCK drains, no asyncio, lossless high-water marks for
throughput, a warm-up before timing.

1. RPC sequential round trip (median, p99): client -> broker -> echo worker -> back.
   Baselines: a C ``zmq.proxy(ROUTER, DEALER)`` broker (the limit) and a Python broker loop
   (poll + NOBLOCK drain + forward, no application logic) with a DEALER echo worker.
   Ours: the middleware's RPC router with a ``ServiceWorker`` and ``RPCClient.call``.
2. Pipelined requests/s with 256 in flight from one client. Baseline: a blocking DEALER that
   keeps the window full through the C proxy. Ours: ``AsyncRPCClient`` with 256 concurrent calls.
3. Pub/sub: a ~200-byte bar, encoded per message at the publisher and decoded per message at
   the subscriber (msgpack, the same codec both sides). Baseline: PUB -> C ``zmq.proxy(XSUB,
   XPUB)`` -> SUB with every HWM at 0 (lossless). Ours: ``Publisher`` -> the middleware's
   pub/sub router -> ``Subscriber`` (sequence numbers, gap check) with the default settings.
   Rate = messages delivered / (subscriber saw its last message - publisher started), both
   ``perf_counter_ns`` (one clock across processes on Linux). Loss: what the subscriber missed
   and what its gap detector reported; the two must be equal.

Prints one table with ratios ours/limit. Absolute numbers drift on a shared machine (run it
on an idle one); the ratios are what to read.
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
from typing import Any

import zmq

from aitrados.bus import protocol as P

HERE = os.path.abspath(__file__)
WARMUP = 2000
BAR = {
    "full_symbol": "CRYPTO:GLOBAL:BTCUSD", "interval": "1M",
    "datetime": datetime(2025, 9, 14, 10, 55, tzinfo=timezone.utc),
    "close_datetime": datetime(2025, 9, 14, 10, 56, tzinfo=timezone.utc),
    "open": 116080.58, "high": 116080.59, "low": 116036.8, "close": 116077.28,
    "volume": 0.15742726, "vwap": 77372.51580908668, "closed": True, "exchange": "GLOBAL",
    "trading_session": "RTH",
}
TOPIC = "ohlc.CRYPTO:GLOBAL:BTCUSD.1M"
SM, NB = int(zmq.SNDMORE), int(zmq.NOBLOCK)


# ------------------------------------------------------------------ child roles
def role_raw_broker(front: str, back: str, kind: str) -> None:
    """ROUTER (clients) | DEALER (workers): the C proxy, or a Python loop draining with NOBLOCK."""
    ctx = zmq.Context()
    f, b = ctx.socket(zmq.ROUTER), ctx.socket(zmq.DEALER)
    for s in (f, b):
        s.sndhwm = s.rcvhwm = 0
    f.bind(front)
    b.bind(back)
    print("ready", flush=True)
    if kind == "c":
        zmq.proxy(f, b)
        return
    poller = zmq.Poller()
    poller.register(f, zmq.POLLIN)
    poller.register(b, zmq.POLLIN)

    def pump(src: zmq.Socket, dst: zmq.Socket) -> None:
        recv, send = src.recv, dst.send
        while True:
            try:
                frame = recv(NB)
            except zmq.Again:
                return
            while src.rcvmore:
                send(frame, SM)
                frame = recv()
            send(frame)

    while True:
        for sock, _ in poller.poll():
            pump(sock, b if sock is f else f)


def role_raw_worker(back: str) -> None:
    """DEALER echo: sends every received frame straight back, envelope included."""
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.sndhwm = s.rcvhwm = 0
    s.connect(back)
    print("ready", flush=True)
    recv, send = s.recv, s.send
    # The frame count is fixed by the protocol (the router's client identity + the 5 request
    # frames): reading exactly that many avoids a getsockopt(RCVMORE) per frame, which cut the
    # pipelined rate 2.5x when this baseline checked ``rcvmore`` (as the limit script's workers do not).
    while True:
        ident, tag, cmd, name, rid, body = recv(), recv(), recv(), recv(), recv(), recv()
        send(ident, SM)
        send(tag, SM)
        send(cmd, SM)
        send(name, SM)
        send(rid, SM)
        send(body)


def role_raw_client(front: str, n_seq: int, n_pipe: int, window: int) -> None:
    """Blocking DEALER: sequential latencies, then *window* requests kept in flight."""
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.sndhwm = s.rcvhwm = 0
    s.connect(front)
    recv, send = s.recv, s.send
    body = P.request_body("echo", {"value": 1})
    head = [P.CLIENT_TAG, P.REQUEST, b"echo"]

    def req(i: int) -> None:
        for fr in head:
            send(fr, SM)
        send(i.to_bytes(8, "big"), SM)
        send(body)

    def rep() -> None:  # the 5 reply frames (tag, command, service, id, body); no RCVMORE checks
        recv()
        recv()
        recv()
        recv()
        recv()

    pc = time.perf_counter_ns
    for i in range(WARMUP):
        req(i)
        rep()
    lat = []
    for i in range(n_seq):
        t = pc()
        req(i)
        rep()
        lat.append(pc() - t)
    t0 = pc()
    keep_window(req, rep, n_pipe, window)
    rate = n_pipe / ((pc() - t0) / 1e9)
    print(json.dumps({"lat_ns": lat, "pipe": rate}), flush=True)


def keep_window(req: Any, rep: Any, n: int, window: int) -> None:
    """Send *n* requests (``req(i)``) keeping *window* in flight, reading each reply (``rep()``) before
    sending the next: the raw client's pipelined loop."""
    sent = 0
    while sent < min(window, n):
        req(sent)
        sent += 1
    for _ in range(n):
        rep()
        if sent < n:
            req(sent)
            sent += 1


def role_our_router(cfg: str) -> None:
    from aitrados.log import setup_logging
    from aitrados.middleware import Middleware
    from aitrados.settings import load_settings

    setup_logging("WARNING")
    mw = Middleware(load_settings(bus=json.loads(cfg))).start()
    print(json.dumps({t: mw.endpoints(t).__dict__ for t in ("ipc", "tcp")}), flush=True)
    sys.stdin.read()
    mw.stop()


def role_our_worker(back: str, token_file: str) -> None:
    """An echo ``ServiceWorker`` presenting the bench middleware's service token (read from *token_file*)."""
    from pathlib import Path

    from aitrados.bus import Service, ServiceWorker
    from aitrados.log import setup_logging

    setup_logging("WARNING")

    class Echo(Service):
        name = "echo"

        def echo(self, value: object) -> object:
            return value

    ServiceWorker(Echo(), back, token=Path(token_file).read_text(encoding="ascii").strip()).start()
    print("ready", flush=True)
    while True:
        time.sleep(3600)


def role_our_client(front: str, n_seq: int, n_pipe: int, window: int) -> None:
    """``RPCClient.call`` sequentially, then ``AsyncRPCClient`` with *window* calls in flight."""
    from aitrados.bus import AsyncRPCClient, RPCClient

    c = RPCClient(front, timeout=30)
    pc = time.perf_counter_ns
    for _ in range(WARMUP):
        c.call("echo", "echo", value=1)
    lat = []
    for _ in range(n_seq):
        t = pc()
        c.call("echo", "echo", value=1)
        lat.append(pc() - t)
    c.close()

    async def pipelined() -> float:
        ac = AsyncRPCClient(front, timeout=60)
        left = [n_pipe]

        # *window* lanes, each calling again as soon as its reply is in (the raw client's window;
        # a semaphore over n_pipe waiting tasks would cost O(n) per wake-up in asyncio itself)
        async def lane() -> None:
            while left[0] > 0:
                left[0] -= 1
                await ac.call("echo", "echo", value=1)

        await ac.call("echo", "echo", value=0)
        t0 = pc()
        await asyncio.gather(*[lane() for _ in range(window)])
        rate = n_pipe / ((pc() - t0) / 1e9)
        ac.close()
        return rate

    print(json.dumps({"lat_ns": lat, "pipe": asyncio.run(pipelined())}), flush=True)


def role_raw_pubsub_proxy(sub_addr: str, pub_addr: str) -> None:
    ctx = zmq.Context()
    xs, xp = ctx.socket(zmq.XSUB), ctx.socket(zmq.XPUB)
    xs.rcvhwm = xs.sndhwm = xp.sndhwm = xp.rcvhwm = 0
    xs.bind(sub_addr)
    xp.bind(pub_addr)
    print("ready", flush=True)
    zmq.proxy(xs, xp)


def _bar_stream(n: int) -> Any:
    """The bars a publisher sends: one dict mutated per message, so each is encoded anew."""
    bar = dict(BAR)
    px = bar["close"]
    for i in range(n):
        bar["close"] = px + (i & 127) * 0.01
        yield bar


def role_raw_publisher(addr: str, n: int) -> None:
    """Lossless PUB: warms up until the subscriber says so (a line on stdin), then sends *n* bars."""
    ctx = zmq.Context()
    s = ctx.socket(zmq.PUB)
    s.sndhwm = 0
    s.connect(addr)
    _warm_up(lambda: s.send_multipart([TOPIC.encode(), b"warm"]))
    send, enc, t = s.send, P.encode, TOPIC.encode()
    c0, t0 = time.process_time(), time.perf_counter_ns()
    for bar in _bar_stream(n):
        send(t, SM)
        send(enc(bar))
    cpu = time.process_time() - c0
    s.send_multipart([t, b"end"])
    print(json.dumps({"t0": t0, "cpu": cpu}), flush=True)
    sys.stdin.readline()


def role_our_publisher(addr: str, n: int) -> None:
    """``Publisher.publish`` (msgpack + sequence numbers) with the default settings."""
    from aitrados.bus import Publisher

    pub = Publisher(addr)
    _warm_up(lambda: pub.publish("ohlc.WARM", "warm"))
    publish = pub.publish
    c0, t0 = time.process_time(), time.perf_counter_ns()
    for bar in _bar_stream(n):
        publish(TOPIC, bar)
    cpu = time.process_time() - c0
    for _ in range(50):  # same topic: a lost tail shows as a gap before the first "end" that arrives
        pub.publish(TOPIC, "end")
        time.sleep(0.02)
    print(json.dumps({"t0": t0, "cpu": cpu}), flush=True)
    sys.stdin.readline()
    pub.close()


def _warm_up(send_one: Any) -> None:
    """Send warm-up messages until the parent writes a line (the subscriber saw traffic)."""
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(sys.stdin, selectors.EVENT_READ)
    print("ready", flush=True)
    while not sel.select(0.002):
        send_one()
    sys.stdin.readline()


# ------------------------------------------------------------------ helpers
def spawn(*args: object) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, HERE, "--role", *map(str, args)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


def line(p: subprocess.Popen) -> str:
    assert p.stdout is not None
    out = p.stdout.readline().strip()
    if not out:
        raise RuntimeError(f"bench child {p.args[3:]} exited with {p.wait()}")
    return out


def tell(p: subprocess.Popen) -> None:
    assert p.stdin is not None
    p.stdin.write("go\n")
    p.stdin.flush()


def stop(*ps: subprocess.Popen) -> None:
    for p in ps:
        p.kill()
        p.wait()


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) process *pid* has used so far, from /proc."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(ns: list[int], q: float) -> float:
    xs = sorted(ns)
    return xs[min(len(xs) - 1, int(q * len(xs)))] / 1000


def raw_subscribe(addr: str, pub: subprocess.Popen, n: int) -> dict[str, float]:
    """Lossless SUB decoding every bar; returns rate and loss (seen against the publisher's count)."""
    s = zmq.Context.instance().socket(zmq.SUB)
    s.rcvhwm = 0
    s.rcvtimeo = 30_000
    s.setsockopt(zmq.SUBSCRIBE, b"ohlc.")
    s.connect(addr)
    recv, dec = s.recv, P.decode
    line(pub)
    recv()
    recv()
    tell(pub)  # saw traffic: start timing
    got, c0 = 0, time.process_time()
    while True:
        recv()
        body = recv()
        if body == b"warm":
            continue
        if body == b"end":
            break
        dec(body)
        got += 1
    t_last, cpu = time.perf_counter_ns(), time.process_time() - c0
    sent = json.loads(line(pub))
    tell(pub)
    s.close()
    return {"rate": got / ((t_last - sent["t0"]) / 1e9), "got": got, "lost": n - got, "detected": 0,
            "cpu_sub": cpu, "cpu_pub": sent["cpu"]}


def our_subscribe(addr: str, pub: subprocess.Popen, n: int) -> dict[str, float]:
    """``Subscriber`` on the router; loss detected = gaps the subscriber reported among the bars."""
    from aitrados.bus import Subscriber

    sub = Subscriber(addr, ["ohlc."])
    line(pub)
    while (m := sub.recv(timeout=30)) is None or m.topic != "ohlc.WARM":
        pass
    tell(pub)
    got, first, t_last = 0, None, 0
    missed_at_start, c0 = sub.stats.missed, time.process_time()
    end_seq = None
    while end_seq is None:
        batch = sub.recv_batch(timeout=30)  # every waiting message in one call (``recv`` takes one)
        if not batch:
            raise RuntimeError("our subscriber saw nothing for 30 s")
        before = got
        for m in batch:
            if m.topic != TOPIC:
                continue
            if first is None:
                first = m.seq
            if m.data == "end":
                end_seq = m.seq
                break
            got += 1
        if got > before:
            t_last = time.perf_counter_ns()  # when the last bar was taken (the end marker's wait is not counted)
    cpu = time.process_time() - c0  # includes waiting for the "end" markers (idle: no CPU)
    sent = json.loads(line(pub))
    t0 = sent["t0"]
    tell(pub)
    # The bars are seq 1..n. A lost head shows as a first seq above 1; gaps before the first "end"
    # that arrived include the "end" markers lost before it (seq n+1 .. end_seq-1), not bars.
    detected = (sub.stats.missed - missed_at_start) + (first - 1) - (end_seq - n - 1)
    sub.close()
    return {"rate": got / ((t_last - t0) / 1e9), "got": got, "lost": n - got, "detected": detected,
            "cpu_sub": cpu, "cpu_pub": sent["cpu"]}


# ------------------------------------------------------------------ main
def rpc_figures(transport: str, eps: dict, tmp: str, n_seq: int, n_pipe: int, rows: list, figs: dict) -> None:
    """RPC seq + pipelined for one transport: C proxy, Python broker, ours."""
    res: dict[str, dict] = {}
    for kind in ("c", "py"):
        rf = f"ipc://{tmp}/raw-{kind}-front.sock" if transport == "ipc" else "tcp://127.0.0.1:0"
        if transport == "tcp":
            rf, rb = f"tcp://127.0.0.1:{_free_port()}", f"tcp://127.0.0.1:{_free_port()}"
        else:
            rb = f"ipc://{tmp}/raw-{kind}-back.sock"
        broker = spawn("raw_broker", rf, rb, kind)
        line(broker)
        worker = spawn("raw_worker", rb)
        line(worker)
        client = spawn("raw_client", rf, n_seq, n_pipe if kind == "c" else 1, 256)
        res[kind] = json.loads(line(client))
        stop(client, worker, broker)
    worker = spawn("our_worker", eps[transport]["rpc_backend"], os.path.join(tmp, "bench-service.token"))
    line(worker)
    client = spawn("our_client", eps[transport]["rpc_frontend"], n_seq, n_pipe, 256)
    res["ours"] = json.loads(line(client))
    stop(client, worker)
    med = {k: statistics.median(v["lat_ns"]) / 1000 for k, v in res.items()}
    p99 = {k: pct(v["lat_ns"], 0.99) for k, v in res.items()}
    rows.append((f"RPC sequential median ({transport})", f"{med['c']:.0f} us (C proxy), {med['py']:.0f} us (Python broker)",
                 f"{med['ours']:.0f} us", f"{med['ours'] / med['c']:.2f}x (goal <= 1.3x)"))
    rows.append((f"RPC sequential p99 ({transport})", f"{p99['c']:.0f} us (C proxy)", f"{p99['ours']:.0f} us",
                 f"{p99['ours'] / p99['c']:.2f}x"))
    rows.append((f"RPC pipelined, 256 in flight ({transport})", f"{res['c']['pipe']:,.0f}/s (C proxy)",
                 f"{res['ours']['pipe']:,.0f}/s", f"{res['ours']['pipe'] / res['c']['pipe']:.2f}x (goal >= 0.5x)"))
    figs[f"rpc_seq_median_us.{transport}"] = {"limit_c_proxy": med["c"], "python_broker": med["py"], "ours": med["ours"]}
    figs[f"rpc_seq_p99_us.{transport}"] = {"limit_c_proxy": p99["c"], "python_broker": p99["py"], "ours": p99["ours"]}
    figs[f"rpc_pipelined_per_s.{transport}"] = {"limit_c_proxy": res["c"]["pipe"], "ours": res["ours"]["pipe"]}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run)")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON to FILE")
    ap.add_argument("--only", choices=["rpc", "pubsub"], help="run only the RPC or only the pub/sub figures")
    ap.add_argument("--transport", nargs="+", choices=["ipc", "tcp"], default=["ipc", "tcp"],
                    help="transports of the RPC figures (default: both)")
    ap.add_argument("--role", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.role:
        globals()[f"role_{a.role[0]}"](*[int(x) if x.isdigit() else x for x in a.role[1:]])
        return
    n_seq = 1000 if a.quick else 5000
    n_pipe = 5000 if a.quick else 50000
    n_pub = 20000 if a.quick else 300000
    tmp = tempfile.mkdtemp(prefix="atb-", dir="/tmp")
    rows: list[tuple[str, str, str, str]] = []
    figs: dict[str, Any] = {}

    cfg = {"name": "bench", "ipc_dir": tmp, "rpc_frontend_port": 0, "rpc_backend_port": 0, "sub_port": 0, "pub_port": 0}
    if a.only != "pubsub":
        ours = spawn("our_router", json.dumps(cfg))
        try:
            eps = json.loads(line(ours))
            for transport in a.transport:
                rpc_figures(transport, eps, tmp, n_seq, n_pipe, rows, figs)
        finally:
            ours.stdin.close()  # type: ignore[union-attr]
            ours.wait(10)
    exact = a.only == "rpc" or pubsub_figures(tmp, cfg, n_pub, rows, figs)
    print(f"\nbody size: {len(P.encode(BAR))} bytes; sequential n={n_seq} (after {WARMUP} warm-up), "
          f"pipelined n={n_pipe}, pub/sub n={n_pub}; cores: {os.cpu_count()}; load average: "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    head = ("what", "raw pyzmq (limit)", "aitrados", "ours / limit")
    w = [max(len(r[i]) for r in rows + [head]) for i in range(4)]
    for r in [head] + rows:
        print("  ".join(c.ljust(w[i]) for i, c in enumerate(r)))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"figures": figs, "n": {"seq": n_seq, "pipelined": n_pipe, "pubsub": n_pub},
                       "load_average": os.getloadavg()}, f, indent=2)
    if not exact:
        sys.exit("the gap detector disagrees with the messages actually lost")


def pubsub_figures(tmp: str, cfg: dict, n_pub: int, rows: list, figs: dict) -> bool:
    """Pub/sub delivered rate and loss, C proxy against ours; returns True when the gap detector was exact."""
    ours = spawn("our_router", json.dumps({**cfg, "name": "benchps"}))
    eps = json.loads(line(ours))
    raw_sub, raw_pub = f"ipc://{tmp}/raw-xsub.sock", f"ipc://{tmp}/raw-xpub.sock"
    proxy = spawn("raw_pubsub_proxy", raw_sub, raw_pub)
    line(proxy)
    try:
        c0 = process_cpu(proxy.pid)
        pub = spawn("raw_publisher", raw_sub, n_pub)
        raw = raw_subscribe(raw_pub, pub, n_pub)
        pub.wait(60)
        raw["cpu_router"] = process_cpu(proxy.pid) - c0
        c0 = process_cpu(ours.pid)
        pub = spawn("our_publisher", eps["ipc"]["publish"], n_pub)
        our = our_subscribe(eps["ipc"]["subscribe"], pub, n_pub)
        pub.wait(60)
        our["cpu_router"] = process_cpu(ours.pid) - c0
    finally:
        stop(proxy)
        ours.stdin.close()  # type: ignore[union-attr]
        ours.wait(10)
    rows.append(("pub/sub ~200 B bar, encode+decode, delivered (ipc)", f"{raw['rate']:,.0f}/s (C proxy, lossless)",
                 f"{our['rate']:,.0f}/s", f"{our['rate'] / raw['rate']:.2f}x (goal >= 0.8x)"))
    exact = our["lost"] == our["detected"]
    rows.append(("pub/sub lost / detected", f"{raw['lost']} lost", f"{our['lost']} lost, {our['detected']} detected",
                 "detector exact" if exact else "DETECTOR WRONG"))
    # CPU per message of each party: unlike the rate, it barely moves with the machine's load, and it
    # shows which party costs what (on 2 cores the three processes share the CPU, so the delivered rate
    # follows their total). Publisher: its send loop; subscriber: its receive loop; router: the process.
    def per_message(r: dict) -> dict[str, float]:  # the subscriber's CPU per message it received
        return {"cpu_pub": r["cpu_pub"] / n_pub * 1e6, "cpu_router": r["cpu_router"] / n_pub * 1e6,
                "cpu_sub": r["cpu_sub"] / r["got"] * 1e6}

    def cpu_row(r: dict) -> tuple[str, float]:
        us = list(per_message(r).values())
        return " / ".join(f"{u:.2f}" for u in us) + f" = {sum(us):.2f}", sum(us)
    (raw_cpu, raw_total), (our_cpu, our_total) = cpu_row(raw), cpu_row(our)
    rows.append(("pub/sub CPU us per message: pub / router / sub", raw_cpu, our_cpu,
                 f"{our_total / raw_total:.2f}x of the CPU"))
    figs["pubsub_cpu_us.ipc"] = {"limit_c_proxy": per_message(raw), "ours": per_message(our)}
    figs["pubsub_per_s.ipc"] = {"limit_c_proxy": raw["rate"], "ours": our["rate"]}
    figs["pubsub_loss.ipc"] = {"limit_c_proxy_lost": raw["lost"], "ours_lost": our["lost"], "ours_detected": our["detected"]}
    return exact


if __name__ == "__main__":
    main()
