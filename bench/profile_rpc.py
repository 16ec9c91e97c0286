"""Where one RPC round trip through our router spends its CPU: a profile of every thread (yappi).

    python bench/profile_rpc.py [--calls 5000] [--transport ipc] [--window 0] [--no-profile]

The middleware's RPC router, an echo ``ServiceWorker`` and an ``RPCClient`` run in one process
(each on its own thread, as in the middleware), so one profiler (yappi, CPU clock, all threads)
sees the whole path; the client makes ``--calls`` sequential ``echo`` calls (``RPCClient``), or with ``--window N`` keeps N
calls in flight (``AsyncRPCClient``, the pipelined figure of bench_bus.py). Prints the CPU
microseconds per call spent in each part of the path — the router (``aitrados.bus.rpc``), the
service worker (``aitrados.bus.service``), the client (``aitrados.bus.client``), the protocol
codec (``aitrados.bus.protocol``, msgspec), pyzmq socket calls, asyncio, and the rest — and the
20 costliest functions by own time. This is a profile, not a benchmark: the profiler slows
Python code several times, so read the shares, not the totals; bench/bench_bus.py gives the
latencies against the raw pyzmq limits. ``--no-profile`` runs the same calls without the profiler and
prints the real process CPU per call (all three parties' threads together), which a loaded machine
disturbs far less than wall-clock latency. bench-only dependency: ``yappi``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import tempfile
import time

CATEGORIES = [("libzmq calls (aitrados/bus/fastio.py, pyzmq's Cython send/recv/getsockopt)", "/bus/fastio.py"),
              ("router (aitrados/bus/rpc.py)", "/bus/rpc.py"), ("service worker (aitrados/bus/service.py)", "/bus/service.py"),
              ("client (aitrados/bus/client.py)", "/bus/client.py"), ("protocol (aitrados/bus/protocol.py)", "/bus/protocol.py"),
              ("pyzmq", "/zmq/"), ("enum (pyzmq's IntFlag constants)", "enum.py"), ("asyncio", "/asyncio/"),
              ("msgspec", "msgspec")]


def category(module: str) -> str:
    """The part of the path a function's module belongs to."""
    for name, needle in CATEGORIES:
        if needle in module:
            return name
    return "other (stdlib, loguru, threading...)"


async def pipelined(address: str, context: object, calls: int, window: int) -> None:
    """*calls* echo calls through one ``AsyncRPCClient``, *window* of them in flight at a time."""
    from aitrados.bus import AsyncRPCClient

    ac = AsyncRPCClient(address, context=context, timeout=60)  # type: ignore[arg-type]
    left = [calls]

    async def lane() -> None:  # *window* lanes, each calling again as soon as its reply is in
        while left[0] > 0:
            left[0] -= 1
            await ac.call("echo", "echo", value=1)

    await asyncio.gather(*[lane() for _ in range(window)])
    ac.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=5000)
    ap.add_argument("--transport", choices=["ipc", "tcp", "inproc"], default="ipc")
    ap.add_argument("--no-profile", action="store_true", help="no profiler: real CPU and wall time per call")
    ap.add_argument("--window", type=int, default=0, help="calls in flight (AsyncRPCClient); 0: sequential RPCClient")
    a = ap.parse_args()
    if a.no_profile:
        yappi = None
    else:
        import yappi

    from aitrados.bus import RPCClient, Service, ServiceWorker
    from aitrados.log import setup_logging
    from aitrados.middleware import Middleware
    from aitrados.settings import load_settings

    setup_logging("WARNING")

    class Echo(Service):
        name = "echo"

        def echo(self, value: object) -> object:
            return value

    tmp = tempfile.mkdtemp(prefix="atp-", dir="/tmp")
    settings = load_settings(bus={"name": "profrpc", "ipc_dir": tmp, "rpc_frontend_port": 0, "rpc_backend_port": 0,
                                  "sub_port": 0, "pub_port": 0})
    mw = Middleware(settings).start()
    ep = mw.endpoints(a.transport)
    if yappi is not None:
        yappi.set_clock_type("cpu")
        yappi.start(builtins=True, profile_threads=True)
    worker = ServiceWorker(Echo(), ep.rpc_backend, bus=settings.bus,
                           context=mw.context if a.transport == "inproc" else None).start()
    client = RPCClient(ep.rpc_frontend, timeout=30, context=mw.context if a.transport == "inproc" else None)
    for _ in range(200):
        client.call("echo", "echo", value=1)
    if yappi is not None:
        yappi.clear_stats()
    c0 = time.process_time()
    t0 = time.perf_counter()
    if a.window:
        asyncio.run(pipelined(ep.rpc_frontend, mw.context if a.transport == "inproc" else None, a.calls, a.window))
    else:
        for _ in range(a.calls):
            client.call("echo", "echo", value=1)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    kind = f"pipelined ({a.window} in flight)" if a.window else "sequential"
    if yappi is None:
        print(f"{a.calls} {kind} calls over {a.transport}, no profiler: {wall / a.calls * 1e6:.0f} µs wall and "
              f"{cpu / a.calls * 1e6:.0f} µs process CPU per call (client, router and worker threads together)")
        client.close()
        worker.stop()
        mw.stop()
        return
    yappi.stop()
    stats = yappi.get_func_stats()
    by_cat: dict[str, float] = collections.defaultdict(float)
    rows = []
    for f in stats:
        by_cat[category(f.module)] += f.tsub
        rows.append((f.tsub, f.ncall, f"{f.name} ({f.module.rsplit('/', 2)[-1]}:{f.lineno})"))
    total = sum(by_cat.values())
    print(f"{a.calls} {kind} calls over {a.transport}, profiled: {wall / a.calls * 1e6:.0f} µs wall per call "
          f"(profiler on), {total / a.calls * 1e6:.0f} µs CPU per call over all threads")
    for name, t in sorted(by_cat.items(), key=lambda kv: -kv[1]):
        print(f"  {name:45} {t / a.calls * 1e6:8.1f} µs/call  {t / total * 100:5.1f} %")
    print("costliest functions by own CPU time:")
    for tsub, n, name in sorted(rows, reverse=True)[:20]:
        print(f"  {tsub / a.calls * 1e6:8.1f} µs/call  {n / a.calls:6.1f} calls/call  {name}")
    client.close()
    worker.stop()
    mw.stop()


if __name__ == "__main__":
    main()
