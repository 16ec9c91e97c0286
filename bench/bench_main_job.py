"""The main job as a whole process: ``aitrados run --plugins sma_cross`` against backtesting.py, side by side.

    python bench/bench_main_job.py [--repeat 3] [--json FILE]

Both programs run as fresh processes (imports included) on the same data — backtesting.py's
GOOG daily bars (2,148 bars) as a CSV file — and the same strategy (SMA 10/20 crossover,
long/short, 99.99 % of equity, next-open fills), and both leave the same kind of output: the
statistics on the terminal, a trades CSV and a chart file (ours: the report folder with
trades.csv, equity.png, equity.csv, metrics.json; theirs: ``stats`` printed, the trades
written with pandas and ``Backtest.plot`` to an HTML file). Wall time is from spawn to exit;
peak memory is the child's maximum resident set (``os.wait4``). Runs alternate; medians are
reported with their ratio ours/theirs (goal ≤ 1.2x for both) and the load average. The CPU
time (user + system) of each process is printed too: on a loaded machine it swings less than
the wall time, though it is not the goal (ours uses the second core for libzmq's I/O threads).
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

THEIRS = r'''
import sys, warnings
import pandas as pd
from backtesting import Backtest, Strategy
from backtesting.lib import crossover
from backtesting.test import SMA

class SmaCross(Strategy):
    n1, n2 = 10, 20
    def init(self):
        self.sma1 = self.I(SMA, self.data.Close, self.n1)
        self.sma2 = self.I(SMA, self.data.Close, self.n2)
    def next(self):
        if crossover(self.sma1, self.sma2):
            self.position.close(); self.buy(size=0.9999)
        elif crossover(self.sma2, self.sma1):
            self.position.close(); self.sell(size=0.9999)

csv, out = sys.argv[1], sys.argv[2]
df = pd.read_csv(csv, index_col=0, parse_dates=True)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    bt = Backtest(df, SmaCross, cash=100_000)
    stats = bt.run()
    print(stats)
    stats["_trades"].to_csv(out + "/trades.csv")
    bt.plot(filename=out + "/plot.html", open_browser=False)
'''


def measure(cmd: list[str], env: dict[str, str], cwd: str) -> tuple[float, float, float]:
    """(wall seconds, peak RSS MiB, CPU seconds) of one child process; raises if it fails."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    err = p.stderr.read().decode(errors="replace") if p.stderr else ""
    if p.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed ({p.returncode}): {err[-2000:]}")
    return wall, ru.ru_maxrss / 1024, ru.ru_utime + ru.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", help="write the figures to this file")
    a = ap.parse_args()
    from backtesting.test import GOOG

    d = Path(tempfile.mkdtemp(prefix="bench-main-"))
    csv = d / "STOCK_US_GOOG_DAY.csv"
    GOOG.rename_axis("Date").reset_index().to_csv(csv, index=False)
    (d / "theirs.py").write_text(THEIRS)
    base = {k: v for k, v in os.environ.items() if not k.startswith("AITRADOS_")}
    ours_env = dict(base, AITRADOS_PLUGINS=json.dumps({"sma_cross": {"full_symbol": "STOCK:US:GOOG", "fast": 10, "slow": 20,
                                                                      "size": "99.99%", "allow_short": True}}),
                    AITRADOS_MARKETDATA__PROVIDER="replay", AITRADOS_MARKETDATA__REPLAY_BUNDLED="false",
                    AITRADOS_MARKETDATA__REPLAY_BAR_FILES=json.dumps([str(csv)]), AITRADOS_BUS__NAME=f"bench{os.getpid()}",
                    AITRADOS_BUS__IPC_DIR=str(d), AITRADOS_BUS__RPC_FRONTEND_PORT="0", AITRADOS_BUS__RPC_BACKEND_PORT="0",
                    AITRADOS_BUS__SUB_PORT="0", AITRADOS_BUS__PUB_PORT="0")
    ours_cmd = [sys.executable, "-m", "aitrados", "run", "--plugins", "sma_cross", "--report-dir", str(d / "report")]
    theirs_cmd = [sys.executable, str(d / "theirs.py"), str(csv), str(d)]
    load0 = os.getloadavg()[0]
    ours, theirs = [], []
    for _ in range(a.repeat):
        theirs.append(measure(theirs_cmd, base, str(d)))
        ours.append(measure(ours_cmd, ours_env, str(d)))
    load1 = os.getloadavg()[0]
    med = {name: tuple(statistics.median(x[i] for x in xs) for i in range(3))
           for name, xs in (("ours", ours), ("theirs", theirs))}
    fig = {"repeat": a.repeat, "ours_wall_s": round(med["ours"][0], 2), "ours_peak_mib": round(med["ours"][1], 1),
           "theirs_wall_s": round(med["theirs"][0], 2), "theirs_peak_mib": round(med["theirs"][1], 1),
           "ours_cpu_s": round(med["ours"][2], 2), "theirs_cpu_s": round(med["theirs"][2], 2),
           "wall_ratio": round(med["ours"][0] / med["theirs"][0], 2), "mem_ratio": round(med["ours"][1] / med["theirs"][1], 2),
           "cpu_ratio": round(med["ours"][2] / med["theirs"][2], 2),
           "goal_ratio": 1.2, "loadavg_before": load0, "loadavg_after": load1}
    print(f"main job, 2,148 daily bars, median of {a.repeat}; load average {load0:.1f} -> {load1:.1f}")
    print(f"{'':24}{'wall s':>8}{'peak MiB':>10}{'CPU s':>8}")
    print(f"{'aitrados run':24}{med['ours'][0]:8.2f}{med['ours'][1]:10.1f}{med['ours'][2]:8.2f}")
    print(f"{'backtesting.py':24}{med['theirs'][0]:8.2f}{med['theirs'][1]:10.1f}{med['theirs'][2]:8.2f}")
    print(f"{'ours / theirs':24}{fig['wall_ratio']:7.2f}x{fig['mem_ratio']:9.2f}x{fig['cpu_ratio']:7.2f}x"
          "   (goal <= 1.2x wall and memory)")
    if a.json:
        Path(a.json).write_text(json.dumps(fig, indent=2))


if __name__ == "__main__":
    main()
