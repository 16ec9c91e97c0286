"""Chart window update cost per 1-minute bar, against baselines measured in the same run.

Baselines: a bare numpy ring-buffer append (six preallocated arrays, one slot written per bar),
a bare Python-list ring append, and (for scale, on fewer bars) a pandas concat-and-drop window.
Ours: ChartWindow.update with 1M bars into a 1M window (every update closes a bar) and into 5M
and 60M windows (aggregation). Prints microseconds per bar and ratios; goal: 1M update <= 3x numpy.

Run: python bench/bench_chart.py [--bars N]
"""

import argparse
import datetime as dt
import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from aitrados.marketdata.chart import ChartWindow
from aitrados.marketdata.generator import generate_bars
from aitrados.marketdata.models import Bar

WINDOW = 500


def numpy_ring(bars: list[Bar]) -> None:
    t = np.zeros(WINDOW, np.float64)
    o, h, l, c, v = (np.zeros(WINDOW) for _ in range(5))
    i = 0
    for b in bars:
        t[i] = b.datetime.timestamp()
        o[i] = b.open
        h[i] = b.high
        l[i] = b.low
        c[i] = b.close
        v[i] = b.volume
        i += 1
        if i == WINDOW:
            i = 0


def list_ring(bars: list[Bar]) -> None:
    ring: list[Bar | None] = [None] * WINDOW
    i = 0
    for b in bars:
        ring[i] = b
        i += 1
        if i == WINDOW:
            i = 0


def pandas_window(bars: list[Bar]) -> None:
    df = pd.DataFrame(columns=["open", "high", "low", "close", "volume"], dtype=float)
    for b in bars:
        row = pd.DataFrame({"open": [b.open], "high": [b.high], "low": [b.low], "close": [b.close], "volume": [b.volume]},
                           index=pd.DatetimeIndex([b.datetime]))
        df = pd.concat([df, row]) if len(df) else row
        if len(df) > WINDOW:
            df = df.iloc[1:]


def chart(interval: str) -> Callable[[list[Bar]], None]:
    def run(bars: list[Bar]) -> None:
        w = ChartWindow(bars[0].full_symbol, interval, size=WINDOW)
        upd = w.update
        for b in bars:
            upd(b)
        assert w.closed_bars()[-1].close_datetime <= bars[-1].close_datetime

    return run


def per_bar(fn: Callable[[list[Bar]], None], bars: list[Bar], repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(bars)
        best = min(best, time.perf_counter() - t0)
    return best / len(bars) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bars", type=int, default=100_000)
    args = ap.parse_args()
    start = dt.datetime(2018, 1, 1, tzinfo=dt.timezone.utc)
    bars = generate_bars("CRYPTO:GLOBAL:BTCUSD", start, start + dt.timedelta(minutes=args.bars), seed=1)
    print(f"{len(bars)} 1-minute bars, window {WINDOW}")
    base = per_bar(numpy_ring, bars)
    rows = [("numpy ring append (baseline)", base), ("python list ring append", per_bar(list_ring, bars))]
    for iv in ("1M", "5M", "60M"):
        rows.append((f"ChartWindow {iv} update", per_bar(chart(iv), bars)))
    rows.append(("pandas concat+drop (2000 bars)", per_bar(pandas_window, bars[:2000], repeat=1)))
    for name, us in rows:
        print(f"{name:34s} {us:9.3f} us/bar   {us / base:7.2f}x numpy ring")
    ratio = rows[2][1] / base
    print(f"goal ChartWindow 1M <= 3x numpy ring: {'met' if ratio <= 3 else 'NOT met'} ({ratio:.2f}x)")


if __name__ == "__main__":
    main()
