"""Sweep benchmark: 8 backtests on a 2-worker Dask LocalCluster against the same 8 one by one.

    python bench/bench_sweep.py [--runs 8] [--workers 2] [--json FILE]

The workload is ``sma_cross`` on backtesting.py's GOOG daily bars (2,148 bars) over a grid of
``fast`` × ``slow`` values; every run writes its full report (CSV, PNG, metrics). "One by one" is
:func:`aitrados.sweep.run_serial` in this process (imports paid once, the cheapest serial
baseline) and, as a user runs them one by one, ``aitrados run`` once per run as a fresh
process (imports paid each time); "sweep" is :func:`aitrados.sweep.run_sweep` including the
cluster's start and stop. The in-process runs and the sweep produce the same rows (checked). Prints wall times, the speed-up and the load average
(other programs on the machine slow both sides; read the ratio, not the seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aitrados import sweep
from aitrados.log import setup_logging
from aitrados.settings import Settings

FAST = [5, 10, 15, 20, 25, 30, 35, 40]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=8, help="number of runs (even, at most 16)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", help="write the figures to this file")
    a = ap.parse_args()
    setup_logging("WARNING")
    from backtesting.test import GOOG

    d = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    csv = d / "STOCK_US_GOOG_DAY.csv"
    GOOG.rename_axis("Date").reset_index().to_csv(csv, index=False)
    s = Settings(_env_file=None)
    s.log_level = "WARNING"
    s.plugins = {"sma_cross": {"full_symbol": "STOCK:US:GOOG", "size": "99.99%"}}
    s.marketdata.replay_bar_files, s.marketdata.replay_bundled = [str(csv)], False
    half = a.runs // 2
    runs = sweep.expand([("sma_cross.fast", FAST[:half]), ("sma_cross.slow", [50, 100])])
    base = sweep.base_settings(s)
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    serial = sweep.run_serial(runs, base, ["sma_cross"], str(d / "serial"))
    t_serial = time.perf_counter() - t0
    t0 = time.perf_counter()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AITRADOS_")}
    for r in runs:
        d_run = sweep.deep_merge(base, r.overrides)
        subprocess.run([sys.executable, "-m", "aitrados", "--log-level", "WARNING", "run", "--plugins", "sma_cross",
                        "--report-dir", str(d / "procs" / r.label)], check=True, stdout=subprocess.DEVNULL,
                       env=dict(env, AITRADOS_PLUGINS=json.dumps(d_run["plugins"]), AITRADOS_MARKETDATA__PROVIDER="replay",
                                AITRADOS_MARKETDATA__REPLAY_BUNDLED="false",
                                AITRADOS_MARKETDATA__REPLAY_BAR_FILES=json.dumps([str(csv)]),
                                AITRADOS_BUS__NAME=f"bs{os.getpid()}", AITRADOS_BUS__IPC_DIR=str(d),
                                AITRADOS_BUS__RPC_FRONTEND_PORT="0", AITRADOS_BUS__RPC_BACKEND_PORT="0",
                                AITRADOS_BUS__SUB_PORT="0", AITRADOS_BUS__PUB_PORT="0"))
    t_procs = time.perf_counter() - t0
    t0 = time.perf_counter()
    par = sweep.run_sweep(runs, base, ["sma_cross"], str(d / "dask"), n_workers=a.workers)
    t_sweep = time.perf_counter() - t0
    load1 = os.getloadavg()
    strip = [[{k: v for k, v in r.items() if k != "report"} for r in res.rows] for res in (serial, par)]
    same = strip[0] == strip[1] and not serial.errors and not par.errors
    fig = {"runs": len(runs), "workers": a.workers, "cpus": os.cpu_count(), "one_by_one_s": round(t_serial, 2),
           "one_by_one_processes_s": round(t_procs, 2), "speedup_vs_processes": round(t_procs / t_sweep, 2),
           "sweep_s": round(t_sweep, 2), "speedup": round(t_serial / t_sweep, 2), "goal_speedup": 1.7,
           "same_rows": same, "loadavg_before": load0[0], "loadavg_after": load1[0]}
    print(f"{len(runs)} runs, {a.workers} workers, {os.cpu_count()} CPUs, load average {load0[0]:.1f} -> {load1[0]:.1f}")
    print(f"one by one (in-process): {t_serial:7.2f} s")
    print(f"one by one (aitrados run per run): {t_procs:7.2f} s")
    print(f"sweep on Dask          : {t_sweep:7.2f} s  (cluster start/stop included)")
    print(f"speed-up vs in-process : {t_serial / t_sweep:7.2f}x  (goal >= 1.7x)   same rows: {same}")
    print(f"speed-up vs processes  : {t_procs / t_sweep:7.2f}x  (goal >= 1.7x)")
    if a.json:
        Path(a.json).write_text(json.dumps(fig, indent=2))


if __name__ == "__main__":
    main()
