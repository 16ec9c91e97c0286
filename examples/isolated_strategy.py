"""A CPU-heavy strategy in its own process keeps the middleware responsive.

Python runs one thread at a time (the GIL), so a strategy that burns CPU inside the
middleware's process slows every router and service there. Marked *isolated*, the same
plugin runs in a worker process the host spawns and supervises; the middleware keeps
answering RPC calls quickly while the strategy works.

Run it::

    python examples/isolated_strategy.py            # isolated, then in-process, and compare
    python examples/isolated_strategy.py --seconds 5

It prints the RPC ping latency (median, p99, worst) while the strategy burns CPU, once with the
strategy isolated and once in-process, and how many bars the strategy got through.
``aitrados run --plugins NAME --isolate NAME`` does the same for an installed plugin.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from aitrados import hookimpl

HERE = Path(__file__).resolve().parent
#: The plugin as an entry-point spec (module:attribute), so it needs no installed distribution.
SPEC = "isolated_strategy:CpuHeavyStrategy"


def burn(seconds: float) -> int:
    """Pure-Python number crunching for about *seconds* (it holds the GIL); returns the work done."""
    end = time.perf_counter() + seconds
    n, acc = 0, 0.0
    while time.perf_counter() < end:
        for i in range(2000):
            acc += (i * 0.5) ** 0.5
        n += 1
    return n


class CpuHeavyStrategy:
    """A strategy that spends *burn* seconds of CPU on every bar (say, a model refit)."""

    burn_seconds = 0.05

    def __init__(self) -> None:
        self.host: Any = None

    @hookimpl
    def on_startup(self, host: Any) -> None:
        self.host = host

    @hookimpl
    def on_bar(self, bar: Any) -> None:
        work = burn(self.burn_seconds)
        self.host.publish("example.burned", {"pid": os.getpid(), "work": work, "close": bar.close,
                                             "cpu": time.process_time()})


def bar(i: int) -> Any:
    """A bar for symbol STOCK:US:DEMO."""
    from aitrados.marketdata.models import Bar

    t = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(minutes=i)
    return Bar("STOCK:US:DEMO", "1M", t, t + dt.timedelta(minutes=1), 100.0, 101.0, 99.0, 100.0 + i % 7, 10.0)


def measure(isolated: bool, seconds: float = 3.0, ping_timeout: float = 2.0) -> dict[str, Any]:
    """Run the strategy (isolated or in-process) on a stream of bars and ping the middleware meanwhile.

    Returns latencies (seconds), timeouts, bars the strategy finished, and the pids it ran in.
    """
    from aitrados.bus import RPCTimeoutError
    from aitrados.pluginhost import PluginHost
    from aitrados.middleware import Middleware
    from aitrados.settings import load_settings

    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p)
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    ipc = tempfile.mkdtemp(prefix="iso-", dir="/tmp")
    settings = load_settings(bus={"name": f"iso{os.getpid()}{int(isolated)}", "ipc_dir": ipc,
                                  "rpc_frontend_port": 0, "rpc_backend_port": 0, "sub_port": 0, "pub_port": 0})
    out: dict[str, Any] = {"isolated": isolated, "latencies": [], "timeouts": 0, "burned": 0, "pids": set(),
                           "cpu": 0.0, "cpu_first": None}
    with Middleware(settings) as mw:
        host = PluginHost(settings, names=[SPEC], isolate=[SPEC] if isolated else ()).start(mw)
        stop = threading.Event()

        def feed() -> None:  # a bar every 20 ms: more work than the strategy can keep up with
            with mw.publisher() as pub:
                i = 0
                while not stop.wait(0.02):
                    pub.publish("ohlc.STOCK:US:DEMO.1M", bar(i))
                    i += 1

        feeder = threading.Thread(target=feed, daemon=True)
        try:
            with mw.subscriber(["example.burned"]) as sub, mw.rpc_client("ipc") as client:
                feeder.start()
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    t0 = time.perf_counter()
                    try:
                        client.call("middleware", "ping", timeout=ping_timeout)
                        out["latencies"].append(time.perf_counter() - t0)
                    except RPCTimeoutError:
                        out["timeouts"] += 1
                    while (m := sub.recv(timeout=0)) is not None:
                        out["burned"] += 1
                        out["pids"].add(m.data["pid"])
                        if out["cpu_first"] is None:
                            out["cpu_first"] = m.data["cpu"]
                        out["cpu"] = m.data["cpu"] - out["cpu_first"]  # CPU seconds burned after the first bar
                    time.sleep(0.005)
        finally:
            stop.set()
            feeder.join(5)
            host.stop()
    return out


def p99(latencies: list[float]) -> float:
    """The 99th percentile of *latencies*."""
    lat = sorted(latencies)
    return lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else float("nan")


def summary(r: dict[str, Any]) -> str:
    """One line describing a ``measure`` result."""
    lat = sorted(r["latencies"])
    where = "its own process" if r["isolated"] else "the middleware's process"
    return (f"strategy in {where}: {len(lat)} pings, median {statistics.median(lat) * 1e3:.2f} ms, "
            f"p99 {p99(lat) * 1e3:.2f} ms, worst {lat[-1] * 1e3:.2f} ms, timeouts {r['timeouts']}; "
            f"bars done {r['burned']}")


def main(argv: list[str] | None = None) -> int:
    """Measure both ways and print the comparison."""
    from aitrados.log import setup_logging

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=3.0, help="how long to measure each way (default 3)")
    args = p.parse_args(argv)
    setup_logging("WARNING")
    iso = measure(True, args.seconds)
    inproc = measure(False, args.seconds)
    print(summary(iso))
    print(summary(inproc))
    if iso["latencies"] and inproc["latencies"]:
        print(f"ping p99 latency, in-process / isolated: {p99(inproc['latencies']) / p99(iso['latencies']):.1f}x; "
              f"pings answered, isolated / in-process: {len(iso['latencies']) / len(inproc['latencies']):.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
