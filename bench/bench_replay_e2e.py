"""End-to-end replay throughput, against baselines measured in the same run.

    python bench/bench_replay_e2e.py [--quick]

A. Market data (issue 4): bars per second from the replay server through the WebSocket client,
   the chart flow (1M, 5M, 15M windows) and the aligner (one group) to a subscriber in another
   process. Baseline: the same replay server streaming the same bars to a bare WS client that
   only decodes them (no chart flow, no bus).
B. The whole loop (issue 5): bars per second through replay, chart flow, strategy, risk and the
   paper broker, with a trivial strategy and with the SMA crossover. Baseline: the same
   strategy run by ``TradingEngine.run`` over the same bars in one process (no replay, no bus).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time

from aitrados.log import setup_logging
from aitrados.marketdata.settings import MarketDataSettings
from aitrados.settings import load_settings

HERE = os.path.abspath(__file__)
SYM = "CRYPTO:GLOBAL:BTCUSD"


def md_settings(days: float) -> MarketDataSettings:
    return MarketDataSettings(provider="replay", replay_symbols=[SYM], replay_days=days, replay_history_days=0.05,
                              replay_bundled=False, replay_progress_every=3600)


def role_counter(address: str) -> None:
    """Subscriber process: count closed 1M bars until replay.end; print the rate."""
    from aitrados.bus import Subscriber
    from aitrados.events import END_TOPIC, Kind, build_topic

    sub = Subscriber(address, [build_topic(Kind.BAR, SYM, "1M"), END_TOPIC])
    print("ready", flush=True)
    n, t0 = 0, None
    while True:
        m = sub.recv(timeout=60)
        if m is None or m.topic == END_TOPIC:
            break
        if m.data["closed"]:
            t0 = t0 or time.perf_counter()
            n += 1
    dt = time.perf_counter() - (t0 or time.perf_counter())
    print(json.dumps({"bars": n, "seconds": dt, "missed": sub.stats.missed}), flush=True)


async def baseline_ws(days: float) -> tuple[int, float]:
    """Bars/s of the replay server -> a bare WS client (decode only)."""
    from aitrados.marketdata.replay_server import ReplayServer
    from aitrados.marketdata.ws_client import AitradosWSClient

    srv = ReplayServer(md_settings(days), autostart="manual")
    await srv.start()
    n = 0
    done = asyncio.Event()

    def on_bar(bar: object) -> None:
        nonlocal n
        n += 1

    ws = AitradosWSClient(srv.ws_url, "bench", on_bar=on_bar, on_replay_end=lambda e: done.set(), queue_records=False)
    await ws.start()
    await ws.subscribe("ohlc", [SYM])
    await ws.wait_subscribed("ohlc")
    t = time.perf_counter()
    srv.start_clock()
    await done.wait()
    dt = time.perf_counter() - t
    await ws.close()
    await srv.stop()
    return n, dt


def ours_marketdata(days: float) -> dict:
    from aitrados.runtime import Runtime

    tmp = tempfile.mkdtemp(prefix="atb-", dir="/tmp")
    s = load_settings(bus={"name": "benche2e", "ipc_dir": tmp, "rpc_frontend_port": 0, "rpc_backend_port": 0,
                           "sub_port": 0, "pub_port": 0})
    s.marketdata = md_settings(days)
    rt = Runtime(s, plugins=[]).start()
    try:
        counter = subprocess.Popen([sys.executable, HERE, "--role", rt.mw.endpoints("ipc").subscribe],
                                   stdout=subprocess.PIPE, text=True)
        assert counter.stdout is not None and counter.stdout.readline().strip() == "ready"
        time.sleep(0.5)
        c = rt.mw.rpc_client(timeout=30)
        for iv in ("1M", "5M", "15M"):
            c.call("chart", "add", full_symbol=SYM, interval=iv, size=200)
        c.call("mtf", "add_group", name="bench", members={SYM: ["1M", "5M", "15M"]})  # first subscriber: starts the clock
        out = json.loads(counter.stdout.readline())
        counter.wait(30)
        stats = c.call("chart", "stats")
        out["published"] = stats["published"]
        return out
    finally:
        rt.stop()


class Trivial:
    """Builds a trivial strategy: it looks at every bar and never trades."""

    @staticmethod
    def make():  # noqa: ANN205
        from aitrados.trading.strategy import Strategy

        class Noop(Strategy):
            name = "noop"
            symbols = (SYM,)
            intervals = ("1M",)

            def on_bar(self, bar: object) -> None:
                self.last = bar

        return Noop()


def make_sma():  # noqa: ANN201
    from aitrados_strategies.sma_cross import SmaCross

    return SmaCross(full_symbol=SYM, interval="1M", fast=10, slow=30, quantity=1.0)


def ours_loop(days: float, make) -> tuple[int, float, int]:  # noqa: ANN001
    from aitrados.runtime import Runtime

    tmp = tempfile.mkdtemp(prefix="atb-", dir="/tmp")
    s = load_settings(bus={"name": "benchloop", "ipc_dir": tmp, "rpc_frontend_port": 0, "rpc_backend_port": 0,
                           "sub_port": 0, "pub_port": 0})
    s.marketdata = md_settings(days)
    s.trading.report_dir = os.path.join(tmp, "report")
    rt = Runtime(s, plugins=[], strategies=[make()], start_clock=False).start()
    try:
        t = time.perf_counter()
        rt.start_replay()
        assert rt.wait_replay(600), "the replay did not finish"
        dt = time.perf_counter() - t
        fills = len(rt.trading.engine.broker.fills())
        return rt.hub.counts["bars_in"], dt, fills
    finally:
        rt.stop()


def baseline_loop(days: float, make) -> tuple[int, float, int]:  # noqa: ANN001
    from aitrados.marketdata.replay_store import ReplayStore
    from aitrados.trading.engine import TradingEngine

    s = md_settings(days)
    store = ReplayStore(start=s.replay_start, days=days, history_days=s.replay_history_days, generated_symbols=[SYM],
                        bundled=False, seed=s.replay_seed)
    bars = store.stream_bars()
    eng = TradingEngine([make()])
    t = time.perf_counter()
    eng.run(bars)
    return len(bars), time.perf_counter() - t, len(eng.broker.fills())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--role")
    a = ap.parse_args()
    if a.role:
        role_counter(a.role)
        return
    setup_logging("WARNING")
    days = 1.0 if a.quick else 5.0
    rows = []
    n, dt = asyncio.run(baseline_ws(days))
    md = ours_marketdata(days)
    base_rate, our_rate = n / dt, md["bars"] / md["seconds"]
    rows.append(("A. replay -> WS -> chart flow + aligner -> bus -> other process", f"{base_rate:,.0f} bars/s (WS decode only)",
                 f"{our_rate:,.0f} bars/s", f"{our_rate / base_rate:.2f}x", f"{md['missed']} missed, {md['published']:,} msgs published"))
    for label, make in (("trivial strategy", Trivial.make), ("SMA crossover", make_sma)):
        bn, bdt, bf = baseline_loop(days, make)
        on, odt, of = ours_loop(days, make)
        rows.append((f"B. whole loop, {label}", f"{bn / bdt:,.0f} bars/s (engine.run in-process)",
                     f"{on / odt:,.0f} bars/s", f"{(on / odt) / (bn / bdt):.2f}x", f"fills {of} vs {bf}"))
    print(f"\n{int(days * 1440):,} one-minute bars per run")
    head = ("what", "baseline", "ours", "ours / baseline", "check")
    w = [max(len(r[i]) for r in rows + [head]) for i in range(5)]
    for r in [head] + rows:
        print("  ".join(c.ljust(w[i]) for i, c in enumerate(r)))


if __name__ == "__main__":
    main()
