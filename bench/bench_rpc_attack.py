"""RPC latency of honest clients while slow peers attack the router, against the same run idle.

    python bench/bench_rpc_attack.py [--calls 2000] [--flood 400000] [--worker thread|process]

A middleware (its own process) serves ``calc`` from a thread of its own process (``thread``,
as ``aitrados run`` serves ``trading``: it shares the GIL with the router) or from a separate
worker process (``process``, as ``aitrados worker`` does). An honest client (this process, ipc) makes
``--calls`` sequential ``calc.add`` calls idle, then again while:

1. a client DEALER with RCVHWM=1 sends ``--flood`` ``middleware.ping`` requests and never
   reads (issue 8, item 1), and
2. a worker that registers (with the service token), heartbeats and never reads is sent
   requests by a second flooding client.

Prints idle p50/p99, under-attack p50/p99, the p99 ratio (the wanted figure is at most 3x),
the router's drop/cut-off counters, and whether any honest worker was lost (heartbeats).
Absolute numbers drift on a shared machine; read the ratio, and run it once, not in a loop.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aitrados.bus import RPCClient

HERE = os.path.abspath(__file__)
#: the hostile peers (a never-reading client and worker) the attack tests use too
ATTACKERS = str(Path(HERE).parent.parent / "tests" / "attackers.py")


def _calc() -> object:
    from aitrados.bus import Service

    class Calc(Service):
        name = "calc"

        def add(self, a: int, b: int) -> int:
            return a + b

    return Calc()


def serve(cfg: dict, with_worker: bool) -> None:
    """Child: the middleware (with ``calc`` in a thread when *with_worker*); prints its ipc endpoints,
    runs until stdin closes."""
    from aitrados.log import setup_logging
    from aitrados.middleware import Middleware
    from aitrados.settings import load_settings

    setup_logging("ERROR")
    with Middleware(load_settings(bus=cfg)) as mw:
        if with_worker:
            mw.serve(_calc())  # type: ignore[arg-type]
        print(json.dumps(mw.endpoints("ipc").__dict__), flush=True)
        sys.stdin.read()


def calc_worker(cfg: dict, backend: str) -> None:
    """Child: ``calc`` in its own process (reads the service token from the ipc folder)."""
    from aitrados.bus import ServiceWorker
    from aitrados.log import setup_logging
    from aitrados.settings import load_settings

    setup_logging("ERROR")
    ServiceWorker(_calc(), backend, bus=load_settings(bus=cfg).bus).start()  # type: ignore[arg-type]
    print("ready", flush=True)
    sys.stdin.read()


def child(*args: str, script: str = HERE) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, script, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def latencies(c: RPCClient, n: int) -> list[float]:
    out = []
    for i in range(n):
        t = time.perf_counter()
        assert c.call("calc", "add", a=i, b=1) == i + 1
        out.append(time.perf_counter() - t)
    return out


def p(xs: list[float], q: float) -> float:
    return statistics.quantiles(xs, n=100)[int(q) - 1] * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--flood", type=int, default=400_000)
    ap.add_argument("--worker", choices=["thread", "process"], default="thread")
    a = ap.parse_args()
    d = tempfile.mkdtemp(prefix="atb-", dir="/tmp")
    cfg = {"name": f"bench{os.getpid()}", "ipc_dir": d, "enable_tcp": False}
    mw = child("serve", json.dumps(cfg), "1" if a.worker == "thread" else "0")
    procs: list[subprocess.Popen] = []
    try:
        eps = json.loads(mw.stdout.readline())  # type: ignore[union-attr]
        if a.worker == "process":
            procs.append(child("calc", json.dumps(cfg), eps["rpc_backend"]))
            assert procs[-1].stdout.readline().strip() == "ready"  # type: ignore[union-attr]
        c = RPCClient(eps["rpc_frontend"], timeout=30)
        deadline = time.monotonic() + 10
        while "calc" not in c.call("middleware", "services"):
            assert time.monotonic() < deadline, "calc never registered"
            time.sleep(0.05)
        latencies(c, 200)  # warm up
        idle = latencies(c, a.calls)
        ids_before = [w["id"] for w in c.call("middleware", "services")["calc"]["workers"]]
        attackers = len(procs)
        procs.append(child("flood", eps["rpc_frontend"], str(a.flood), "middleware", script=ATTACKERS))
        procs.append(child("deaf-worker", eps["rpc_backend"], "deaf", f"{d}/{cfg['name']}-service.token",
                           script=ATTACKERS))
        assert procs[-1].stdout.readline().strip() == "registered"  # type: ignore[union-attr]
        procs.append(child("flood", eps["rpc_frontend"], str(a.flood // 4), "deaf", script=ATTACKERS))
        attacked = latencies(c, a.calls)
        for pr in (procs[attackers], procs[attackers + 2]):
            pr.stdout.readline()  # type: ignore[union-attr]  # "sent": the whole flood went out
        attacked += latencies(c, a.calls)
        idle_again = latencies(c, a.calls)  # the attackers are still connected, their floods are over
        stats = c.call("middleware", "stats")["rpc"]
        ids_after = [w["id"] for w in c.call("middleware", "services")["calc"]["workers"]]
        print(f"honest calc.add over ipc (calc in a {a.worker}), {a.calls} calls idle and {2 * a.calls} under attack")
        print(f"  idle           p50 {p(idle, 50):8.0f} us   p99 {p(idle, 99):8.0f} us")
        print(f"  under attack   p50 {p(attacked, 50):8.0f} us   p99 {p(attacked, 99):8.0f} us")
        print(f"  after attack   p50 {p(idle_again, 50):8.0f} us   p99 {p(idle_again, 99):8.0f} us")
        print(f"  p99 ratio attack/idle: {p(attacked, 99) / p(idle, 99):.2f}x (wanted <= 3x)")
        print(f"  router: undeliverable {stats['undeliverable']}, dropped {stats['peers']['dropped']}, "
              f"cut-offs {stats['peers']['cut_offs']}, discarded from cut-off peers "
              f"{stats['peers']['discarded_from_cut_off']}, busy {stats['busy']}, workers lost {stats['workers_lost']}")
        print(f"  honest worker kept (no missed heartbeat): {ids_after == ids_before}")
    finally:
        for pr in procs:
            pr.kill()
            pr.wait()
        mw.stdin.close()  # type: ignore[union-attr]
        mw.wait(15)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve(json.loads(sys.argv[2]), sys.argv[3] == "1")
    elif len(sys.argv) > 1 and sys.argv[1] == "calc":
        calc_worker(json.loads(sys.argv[2]), sys.argv[3])
    else:
        main()
