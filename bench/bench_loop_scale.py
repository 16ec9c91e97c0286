"""The whole loop at scale: 1, 10 and 100 stock symbols of 1-minute bars, against the in-process engine.

    python bench/bench_loop_scale.py [--days 14] [--sizes 1,10,100] [--replay process|thread] [--json FILE]

For each size N: N generated US stock symbols (seeded 1-minute bars, NYSE hours and calendar)
over ``--days`` calendar days from 2018-03-05 (14 days = 10 trading days = 3,900 bars a
symbol, 390,000 bars for 100 symbols), one trivial strategy that looks at every bar of every
symbol and never trades. "Ours" is the whole loop — replay server, WebSocket, chart flow, hub,
bus, trading runtime — in a fresh process (``Runtime``), the replay server in its own process
(``marketdata.replay_process``; ``--replay thread`` keeps it in the middleware's); the baseline is ``TradingEngine.run``
over the same bars (``ReplayStore.stream_bars``) in another fresh process. Each prints the bars
it saw, the seconds from the clock's start to the end of the replay (ours: until the report is
written; also printed: the rate up to ``replay.end``, before the report) and its fills (both 0:
same fills); the parent reads the child's peak resident memory (``os.wait4``). While ours replays, a
thread pings the router (``middleware ping`` over ipc, every 20 ms, 5 s timeout) and keeps the
round trips (goal: p99 ≤ 10 ms throughout). Prints bars/s, CPU per bar of the whole processes (start-up included;
steadier than wall time on a loaded machine), the ratio ours/baseline (goal ≥ 0.3x
at 100 symbols), memory and ping p50/p99/max per size, with the load average.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

START = dt.datetime(2018, 3, 5, tzinfo=dt.timezone.utc)


def symbols(n: int) -> list[str]:
    """``STOCK:US:S000`` ... the N generated symbols."""
    return [f"STOCK:US:S{i:03d}" for i in range(n)]


def md_settings(n: int, days: float, replay_process: bool = False):  # noqa: ANN201
    from aitrados.marketdata.settings import MarketDataSettings

    over = {"replay_process": True} if replay_process else {}  # (unset: this bench also runs on older versions)
    return MarketDataSettings(provider="replay", replay_symbols=symbols(n), replay_start=START, replay_days=days,
                              replay_history_days=0.05, replay_bundled=False, replay_progress_every=10 ** 9, **over)


def noop(n: int):  # noqa: ANN201
    """A strategy over all N symbols that keeps the last bar and never trades."""
    from aitrados.trading.strategy import Strategy

    class Noop(Strategy):
        name = "noop"
        intervals = ("1M",)

        def on_bar(self, bar: object) -> None:
            self.last = bar

    st = Noop()
    st.symbols = tuple(symbols(n))
    return st


def role_ours(n: int, days: float, replay: str = "process") -> dict:
    from aitrados.runtime import Runtime
    from aitrados.settings import load_settings

    tmp = tempfile.mkdtemp(prefix="atl-", dir="/tmp")
    s = load_settings(bus={"name": f"scale{os.getpid()}", "ipc_dir": tmp, "rpc_frontend_port": 0, "rpc_backend_port": 0,
                           "sub_port": 0, "pub_port": 0})
    s.marketdata = md_settings(n, days, replay_process=replay == "process")
    s.trading.report_dir = os.path.join(tmp, "report")
    rt = Runtime(s, plugins=[], strategies=[noop(n)], start_clock=False).start()
    pings: list[float] = []
    done = threading.Event()

    def pinger() -> None:
        from aitrados.bus import RPCClient

        c = RPCClient(rt.mw.endpoints("ipc").rpc_frontend, timeout=5.0)
        try:
            while not done.wait(0.02):
                t0 = time.perf_counter()
                c.call("middleware", "ping")
                pings.append((t0, time.perf_counter() - t0))
        finally:
            c.close()

    th = threading.Thread(target=pinger, name="bench-pinger", daemon=True)
    ended: list[float] = []  # when the hub handed out replay.end (the report is written after it)
    def on_end(kind: str, _obj: object) -> None:
        if kind == "end":
            ended.append(time.perf_counter())

    on_end.hub_kinds = frozenset({"end"})  # what events.consumes("end") marks (older versions ignore it)
    rt.hub.consumers.append(on_end)
    try:
        th.start()
        t = time.perf_counter()
        rt.start_replay()
        if not rt.wait_replay(3600):
            raise RuntimeError("the replay did not finish within an hour")
        secs = time.perf_counter() - t
        done.set()
        th.join(10)
        ms = sorted(p * 1000 for _, p in pings) or [float("nan")]
        # the same during the replay only (pings sent before replay.end; the report is written after it)
        during = sorted(p * 1000 for t0, p in pings if not ended or t0 < ended[0]) or [float("nan")]
        res = {"bars": rt.hub.counts["bars_in"], "seconds": secs, "fills": len(rt.trading.engine.broker.fills()),
                "loop_seconds": (ended[0] - t) if ended else secs,
                "published": rt.hub.counts["published"], "pings": len(pings), "ping_p50_ms": ms[len(ms) // 2],
                "ping_p99_ms": ms[min(len(ms) - 1, int(len(ms) * 0.99))], "ping_max_ms": ms[-1],
                "loop_ping_p99_ms": during[min(len(during) - 1, int(len(during) * 0.99))], "loop_ping_max_ms": during[-1]}
    finally:
        done.set()
        rt.stop()
    # the replay server's own process (--replay process) is this process's only waited-for child
    res["replay_peak_mib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 if replay == "process" else 0.0
    res["self_peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the middleware alone
    return res


def role_base(n: int, days: float) -> dict:
    from aitrados.marketdata.replay_store import ReplayStore
    from aitrados.trading.engine import TradingEngine

    s = md_settings(n, days)
    store = ReplayStore(start=s.replay_start, days=days, history_days=s.replay_history_days,
                        generated_symbols=symbols(n), bundled=False, seed=s.replay_seed)
    bars = store.stream_bars()
    eng = TradingEngine([noop(n)])
    t = time.perf_counter()
    eng.run(bars)
    return {"bars": len(bars), "seconds": time.perf_counter() - t, "fills": len(eng.broker.fills())}


def child(role: str, n: int, days: float, replay: str = "process") -> dict:
    """Run one role in a fresh process; its JSON result plus its peak RSS in MiB (with ``--replay process``
    the replay server's own process is counted apart, in ``replay_peak_mib``, and ours is the middleware's
    own peak, ``self_peak_mib``: ``wait4`` reports the largest of a child and its children)."""
    p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--role", role, "--n", str(n), "--days", str(days),
                          "--replay", replay], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    out = p.stdout.read().decode() if p.stdout else ""
    err = p.stderr.read().decode(errors="replace") if p.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{role} {n} failed: {err[-2000:]}")
    res = json.loads(out.strip().splitlines()[-1])
    # wait4's peak is the largest of the child and its own children (ours: the replay server's may be larger)
    res["peak_mib"] = res.get("self_peak_mib", ru.ru_maxrss / 1024)
    res["cpu_s"] = ru.ru_utime + ru.ru_stime  # the whole process (and its replay server child), start-up included
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=float, default=14.0, help="calendar days of replay (14 = 10 trading days)")
    ap.add_argument("--sizes", default="1,10,100", help="numbers of symbols")
    ap.add_argument("--json", help="write the figures to this file")
    ap.add_argument("--role", choices=["ours", "base"], help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--replay", choices=["process", "thread"], default="process",
                    help="where ours runs the replay server (marketdata.replay_process); default: its own process")
    a = ap.parse_args()
    from aitrados.log import setup_logging

    setup_logging("WARNING")
    if a.role:
        print(json.dumps(role_ours(a.n, a.days, a.replay) if a.role == "ours" else role_base(a.n, a.days)), flush=True)
        return
    load0 = os.getloadavg()[0]
    rows = []
    for n in (int(x) for x in a.sizes.split(",")):
        base, ours = child("base", n, a.days), child("ours", n, a.days, a.replay)
        rows.append({"symbols": n, "bars": ours["bars"], "base_bars": base["bars"],
                     "base_bars_s": base["bars"] / base["seconds"], "ours_bars_s": ours["bars"] / ours["seconds"],
                     "ratio": (ours["bars"] / ours["seconds"]) / (base["bars"] / base["seconds"]),
                     "fills": ours["fills"], "base_fills": base["fills"], "published": ours["published"],
                     "ours_peak_mib": ours["peak_mib"], "replay_peak_mib": ours["replay_peak_mib"],
                     "base_peak_mib": base["peak_mib"], "replay": a.replay,
                     "loop_bars_s": ours["bars"] / ours["loop_seconds"],
                     "ours_cpu_us_per_bar": ours["cpu_s"] / ours["bars"] * 1e6,
                     "base_cpu_us_per_bar": base["cpu_s"] / base["bars"] * 1e6,
                     **{k: ours[k] for k in ("pings", "ping_p50_ms", "ping_p99_ms", "ping_max_ms", "loop_ping_p99_ms",
                                             "loop_ping_max_ms")}})
        r = rows[-1]
        print(f"{n:4d} symbols  {r['bars']:>8,} bars (baseline {r['base_bars']:,})  ours {r['ours_bars_s']:>9,.0f} bars/s  "
              f"engine.run {r['base_bars_s']:>9,.0f} bars/s  ratio {r['ratio']:.3f}x (goal >= 0.3x; "
              f"{r['loop_bars_s']:,.0f} bars/s to replay.end, before the report)  CPU per bar (whole processes) "
              f"{r['ours_cpu_us_per_bar']:.0f} µs vs {r['base_cpu_us_per_bar']:.0f} µs  "
              f"memory {r['ours_peak_mib']:.0f} MiB + replay server {r['replay_peak_mib']:.0f} MiB vs "
              f"{r['base_peak_mib']:.0f} MiB  fills {r['fills']} vs {r['base_fills']}  "
              f"{r['published'] / max(1, r['bars']):.1f} msgs/bar  ping p50/p99/max {r['ping_p50_ms']:.1f}/"
              f"{r['ping_p99_ms']:.1f}/{r['ping_max_ms']:.1f} ms ({r['pings']} pings; goal p99 <= 10 ms; until "
              f"replay.end p99/max {r['loop_ping_p99_ms']:.1f}/{r['loop_ping_max_ms']:.1f} ms)", flush=True)
    load1 = os.getloadavg()[0]
    print(f"load average {load0:.1f} -> {load1:.1f} on {os.cpu_count()} CPUs; replay server: {a.replay}")
    if a.json:
        Path(a.json).write_text(json.dumps({"rows": rows, "loadavg_before": load0, "loadavg_after": load1}, indent=2))


if __name__ == "__main__":
    main()
