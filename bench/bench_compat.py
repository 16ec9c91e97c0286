"""Compat gateway benchmark: official aitrados-api clients through our gateway vs through the
official ``run_all()`` middleware, measured in the same run.

    python bench/bench_compat.py [--quick] [--json FILE]

Each side runs as it is deployed: the routers in one process (ours: the native middleware plus the
gateway; official: ``run_all()``'s two routers), the echo ``BackendService`` in a second, the
clients in a third; each side on its own free tcp ports; official clients unchanged, over tcp:

1. RPC: ``FrontendRequest.call_sync`` to an official ``BackendService`` echo (client -> router ->
   backend -> router -> client), sequential; median and p99 round trip.
2. Pub/sub: an official ``AsyncPublisher`` sends N messages on ``on_bench``; a raw SUB counts
   them (sequence numbers in the body). Rate = delivered / (last delivery - first send); loss =
   N - delivered, and it must be 0 for both. Twice: with ``send_topic`` (the sync call, which
   runs one ``asyncio.run`` per message, so the publisher caps the rate near 2-3k/s and the
   routers are far from busy), then with ``await a_send_topic`` in one event loop (the official
   async API, about ten times faster: the run that loads the routers).

Prints one table with ratios ours/official. Needs ``pip install -e '.[test]'`` (aitrados-api).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _aim_official(ports: list[int], ipc_dir: str) -> None:
    """Point the official client classes at *ports* (tcp, also the ipc names into *ipc_dir*)."""
    from aitrados_api.trade_middleware import client_adresss_detector as D
    from aitrados_api.trade_middleware import intelligent_router_address as A

    classes = (A.FrontendIntelligentRouterAddress, A.BackendIntelligentRouterAddress,
               A.SubIntelligentRouterAddress, A.PubIntelligentRouterAddress)
    dets = (D.FrontendAddressDetector, D.BackendAddressDetector, D.SubAddressDetector, D.PubAddressDetector)
    for name, cls, det, port in zip(("frontend", "backend", "sub", "pub"), classes, dets, ports):
        cls.TCP = f"tcp://127.0.0.1:{port}"
        cls.IPC = f"ipc://{ipc_dir}/{name}.sock"
        det._address_url = cls.TCP  # both sides measured over tcp


def _start_side(side: str, ports: list[int], ipc_dir: str) -> Any:
    if side == "official":
        from aitrados_api.trade_middleware.router_instance import TradeMiddlewareRouterInstance

        TradeMiddlewareRouterInstance.run_rpc_router()
        TradeMiddlewareRouterInstance.run_pubsub_router()
        return None
    from aitrados.middleware import Middleware
    from aitrados.settings import load_settings
    from aitrados_plugins.aitrados_compat import CompatGateway, CompatSettings

    s = load_settings(bus={"name": f"bench{os.getpid()}", "ipc_dir": ipc_dir, "rpc_frontend_port": 0,
                           "rpc_backend_port": 0, "sub_port": 0, "pub_port": 0})
    mw = Middleware(s).start()
    cfg = CompatSettings(frontend_port=ports[0], backend_port=ports[1], sub_port=ports[2], pub_port=ports[3],
                         ipc_frontend=f"ipc://{ipc_dir}/frontend.sock", ipc_backend=f"ipc://{ipc_dir}/backend.sock",
                         ipc_sub=f"ipc://{ipc_dir}/sub.sock", ipc_pub=f"ipc://{ipc_dir}/pub.sock")
    return mw, CompatGateway(cfg, mw.endpoints(), s.bus, mw.context).start()


def _echo_backend() -> None:
    from aitrados_api.trade_middleware.backend_service import BackendService
    from aitrados_api.trade_middleware.identity_mixin import IdentityMixin
    from aitrados_api.trade_middleware.response import AsyncBackendResponse

    class Ident(IdentityMixin):
        backend_identity = "bench_echo"

    class Echo(BackendService):
        IDENTITY = Ident

        async def a_accept(self, function_name: str, *args: Any, **kwargs: Any) -> Any:
            return json.dumps({"args": list(args)})

    def run() -> None:
        try:
            asyncio.new_event_loop().run_until_complete(AsyncBackendResponse(Echo()).init())
        except Exception as exc:  # reported: the calls below then fail loudly
            print(f"echo backend stopped: {exc}", file=sys.stderr)

    threading.Thread(target=run, daemon=True).start()


#: What a child prints when it is ready. The official router logs to stdout from its threads, so
#: the marker is written in one call (``print`` writes the text and the newline apart, and a log
#: line could land between them) and the parent looks for it anywhere in a line.
READY = "bench-child-ready"


def _say_ready() -> None:
    sys.stdout.write(READY + "\n")
    sys.stdout.flush()


def _serve(side: str, ports: list[int], ipc_dir: str) -> None:
    """Run one side's routers until stdin closes."""
    _aim_official(ports, ipc_dir)
    started = _start_side(side, ports, ipc_dir)
    _say_ready()
    sys.stdin.read()
    if started is not None:  # ours: where any loss happened (the gateway's own counts)
        gw = started[1]
        # the native bridge runs niced and may still be catching up: report once it has settled
        # (nothing bridged for two loss-count periods), at most 60 s from now
        deadline, last, still = time.monotonic() + 60, -1, 0
        while time.monotonic() < deadline and still < 2:
            now = gw.stats["published_in"] + gw.stats["malformed"]
            still = still + 1 if now == last else 0
            last = now
            time.sleep(1.5)
        print(json.dumps({"gateway": gw.stats, "in_frames": gw.official_frames_in(5)}), flush=True)
    os._exit(0)  # the official routers' daemon threads have no stop


def _backend(ports: list[int], ipc_dir: str) -> None:
    """Run the echo backend until stdin closes."""
    _aim_official(ports, ipc_dir)
    _echo_backend()
    _say_ready()
    sys.stdin.read()
    os._exit(0)


def _child(side: str, calls: int, msgs: int, ports: list[int], ipc_dir: str) -> dict[str, Any]:
    _aim_official(ports, ipc_dir)
    from aitrados_api.trade_middleware.request import FrontendRequest

    deadline = time.monotonic() + 30
    while True:  # wait for the backend's registration (bounded)
        try:
            if FrontendRequest.call_sync("bench_echo", "echo", 0, timeout=2) == {"args": [0]}:
                break
        except Exception:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"{side}: echo backend never answered")
        time.sleep(0.1)
    for i in range(20):  # warm-up
        FrontendRequest.call_sync("bench_echo", "echo", i, timeout=5)
    rtts = []
    for i in range(calls):
        t0 = time.perf_counter_ns()
        r = FrontendRequest.call_sync("bench_echo", "echo", i, timeout=5)  # a timeout raises: no silent hang
        rtts.append((time.perf_counter_ns() - t0) / 1000)
        assert r == {"args": [i]}, r
    rtts.sort()
    from aitrados_api.trade_middleware.library.publisher_mixin import AsyncPublisher

    pub = AsyncPublisher()  # sends one fake_topic message
    sent = [1]

    def send(i: int, body: Any) -> None:
        sent[0] += 1
        pub.send_topic("on_bench", body)

    rate, lost = _pubsub(side, msgs, ports, send, None)

    async def burst(n: int) -> None:
        for i in range(n):
            await pub.a_send_topic("on_bench", {"seq": i, "close": 123.45, "full_symbol": "CRYPTO:GLOBAL:BTCUSD"})

    arate, alost = _pubsub(side, msgs * 4, ports, send, lambda n: asyncio.run(burst(n)))
    return {"side": side, "rpc_median_us": statistics.median(rtts), "rpc_p99_us": rtts[int(len(rtts) * 0.99) - 1],
            "pub_rate": rate, "pub_sent": msgs, "pub_lost": lost,
            "apub_rate": arate, "apub_sent": msgs * 4, "apub_lost": alost, "published": sent[0] + msgs * 4}


def _pubsub(side: str, msgs: int, ports: list[int], send: Any, burst: Any) -> tuple[float, int]:
    """Official publisher -> router -> raw SUB: *msgs* messages sent by ``send(i, body)`` one at a
    time, or by ``burst(msgs)`` when given; returns (delivered per second, messages lost)."""
    import zmq

    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.rcvhwm = 0
    sub.connect(f"tcp://127.0.0.1:{ports[3]}")
    sub.subscribe(b"on_bench")
    deadline = time.monotonic() + 30
    while not sub.poll(50):  # the subscription has reached the publisher (bounded)
        send(-1, {"seq": -1})
        if time.monotonic() > deadline:
            raise SystemExit(f"{side}: subscription never reached the publisher")
    while sub.poll(200):
        sub.recv_multipart()
    got: set[int] = set()
    last = [0]
    sent = threading.Event()

    def count() -> None:
        end = time.monotonic() + 60
        quiet = 0.0  # seconds without a message once everything was sent: the rest is lost
        while len(got) < msgs and time.monotonic() < end and quiet < 3.0:
            if sub.poll(200):
                quiet = 0.0
                _, body = sub.recv_multipart()
                seq = json.loads(body)["seq"]
                if seq >= 0:
                    got.add(seq)
                    last[0] = time.perf_counter_ns()
            elif sent.is_set():
                quiet += 0.2

    t = threading.Thread(target=count)
    t.start()
    t0 = time.perf_counter_ns()
    if burst is not None:
        burst(msgs)
    else:
        for i in range(msgs):
            send(i, {"seq": i, "close": 123.45, "full_symbol": "CRYPTO:GLOBAL:BTCUSD"})
    sent.set()
    t.join()
    sub.close(0)
    ctx.term()
    return (len(got) / ((last[0] - t0) / 1e9) if got else 0.0), msgs - len(got)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer calls and messages")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON to FILE")
    ap.add_argument("--role", nargs=4, help=argparse.SUPPRESS)  # ROLE SIDE PORTS IPC_DIR
    a = ap.parse_args()
    calls, msgs = (100, 1000) if a.quick else (500, 5000)
    if a.role:
        role, side, ports_s, ipc_dir = a.role
        ports = [int(p) for p in ports_s.split(",")]
        if role == "serve":
            _serve(side, ports, ipc_dir)
        elif role == "backend":
            _backend(ports, ipc_dir)
        else:
            print(json.dumps(_child(side, calls, msgs, ports, ipc_dir)))
            os._exit(0)
        return 0
    out = {}
    for side in ("official", "ours"):
        ports, ipc_dir = _free_ports(4), tempfile.mkdtemp(prefix="bc-", dir="/tmp")
        role = [",".join(map(str, ports)), ipc_dir]
        procs = []
        gateway = None
        try:
            for r_name in ("serve", "backend"):
                p = subprocess.Popen([sys.executable, __file__, "--role", r_name, side, *role],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                procs.append(p)
                lines = []  # the child may print before it is ready (bounded: it ends or says ready)
                while p.stdout and (line := p.stdout.readline()) and READY not in line:
                    lines.append(line)
                if not line or READY not in line:
                    print(f"{side}: {r_name} did not start", file=sys.stderr)
                    return 1
            argv = [sys.executable, __file__, "--role", "client", side, *role] + (["--quick"] if a.quick else [])
            r = subprocess.run(argv, capture_output=True, text=True, timeout=240)
        finally:
            for p in procs:
                if p.stdin:
                    p.stdin.close()
                try:
                    tail = p.stdout.read() if p.stdout else ""  # the child ends after writing it
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    tail = ""
                if p is procs[0] and side == "ours":
                    counts = [line for line in tail.splitlines() if line.startswith('{"gateway"')]
                    gateway = json.loads(counts[-1]) if counts else None
        if r.returncode != 0:
            print(r.stderr[-3000:], file=sys.stderr)
            return 1
        out[side] = json.loads(r.stdout.strip().splitlines()[-1])
        if side == "ours":
            out[side]["gateway"] = gateway
    o, u = out["official"], out["ours"]
    print(f"{'measure':34} {'official run_all()':>18} {'ours (gateway)':>16} {'ours/official':>14}")
    for key, label, better in (("rpc_median_us", "call_sync round trip median (us)", "lower"),
                               ("rpc_p99_us", "call_sync round trip p99 (us)", "lower"),
                               ("pub_rate", "official pub->sub, send_topic (/s)", "higher"),
                               ("apub_rate", "official pub->sub, a_send_topic (/s)", "higher")):
        print(f"{label:34} {o[key]:18.1f} {u[key]:16.1f} {u[key] / o[key]:13.2f}x ({better} is better)")
    for key, label in (("pub", "send_topic"), ("apub", "a_send_topic")):
        print(f"{label + ' lost (of ' + str(o[key + '_sent']) + ')':34} {o[key + '_lost']:18d} {u[key + '_lost']:16d}")
    g = u.get("gateway")
    if g and g.get("in_frames") is not None:  # where a loss happened: before the gateway, or in it
        print(f"ours: the gateway received {g['in_frames'] // 2} official publishes (the {u['published']} sent, "
              "less warm-ups a publisher drops before it hears the subscription); bridged to the native "
              f"bus {g['gateway']['published_in']}, bridge capture lost {g['gateway']['bridge_lost_frames']} frames")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
