"""Aligner cost per bar: 100 symbols x 3 intervals (1M, 5M, 15M) in one group, against baselines
measured in the same run.

Baselines: the bare bookkeeping any aligner needs (a dict insert per bar keyed by member and close
time), and aggregating the same 1M bars into 5M and 15M chart windows (the work that precedes
alignment in the pipeline). Ours: Aligner.feed in time order, and with random arrival delays of
up to 90 s (bars shuffled within that window, lateness 120 s). Prints microseconds per bar,
snapshots per second and ratios.

Run: python bench/bench_align.py [--symbols N] [--minutes M]
"""

import argparse
import datetime as dt
import random
import time
from collections.abc import Callable

from aitrados.marketdata.align import Aligner
from aitrados.marketdata.chart import ChartWindow, resample_bars
from aitrados.marketdata.generator import generate_bars
from aitrados.marketdata.models import Bar

UTC = dt.timezone.utc
INTERVALS = ("1M", "5M", "15M")


def make_bars(n_symbols: int, minutes: int) -> tuple[list[str], list[Bar], list[Bar]]:
    start = dt.datetime(2018, 6, 4, tzinfo=UTC)
    end = start + dt.timedelta(minutes=minutes)
    symbols = [f"CRYPTO:GLOBAL:C{i:03d}USD" for i in range(n_symbols)]
    ones: list[Bar] = []
    allbars: list[Bar] = []
    for fs in symbols:
        m1 = generate_bars(fs, start, end, seed=3)
        ones += m1
        allbars += m1
        for iv in INTERVALS[1:]:
            allbars += resample_bars(m1, iv, include_partial=False)
    allbars.sort(key=lambda b: (b.close_datetime, b.full_symbol, b.interval))
    ones.sort(key=lambda b: (b.close_datetime, b.full_symbol))
    return symbols, ones, allbars


def timed(fn: Callable[[], int], repeat: int = 3) -> tuple[float, int]:
    best, out = float("inf"), 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=100)
    ap.add_argument("--minutes", type=int, default=240)
    args = ap.parse_args()
    symbols, ones, bars = make_bars(args.symbols, args.minutes)
    group = {fs: list(INTERVALS) for fs in symbols}
    start = bars[0].datetime
    print(f"{len(symbols)} symbols x {len(INTERVALS)} intervals, {len(bars)} closed bars over {args.minutes} minutes")

    def dict_baseline() -> int:
        d: dict = {}
        for b in bars:
            d[(b.full_symbol, b.interval, b.close_datetime)] = b
        return len(d)

    def charts() -> int:
        wins = {(fs, iv): ChartWindow(fs, iv, size=500) for fs in symbols for iv in INTERVALS[1:]}
        n = 0
        for b in ones:
            for iv in INTERVALS[1:]:
                n += wins[(b.full_symbol, iv)].update(b) == 3
        return n

    def in_order() -> int:
        al = Aligner(lateness=dt.timedelta(seconds=120))
        al.add_group("all", group, start=start)
        n = 0
        for b in bars:
            n += len(al.feed(b))
        return n

    rng = random.Random(7)
    arrivals = sorted(((b.close_datetime + dt.timedelta(seconds=rng.uniform(0, 90)), b) for b in bars), key=lambda a: a[0])

    def delayed() -> int:
        al = Aligner(lateness=dt.timedelta(seconds=120))
        al.add_group("all", group, start=start)
        n = 0
        for at, b in arrivals:
            n += len(al.feed(b, now=at))
        n += len(al.tick(arrivals[-1][0] + dt.timedelta(hours=1)))
        return n

    t_base, _ = timed(dict_baseline)
    t_chart, _ = timed(charts)
    rows = [("dict insert per bar (baseline)", t_base, None), ("chart windows 5M+15M from 1M bars", t_chart, None)]
    for name, fn in (("Aligner.feed, time order", in_order), ("Aligner.feed, random delays <= 90 s", delayed)):
        t, snaps = timed(fn)
        rows.append((name, t, snaps))
    base_us = t_base / len(bars) * 1e6
    for name, t, snaps in rows:
        us = t / len(bars) * 1e6
        extra = f"   {snaps} snapshots, {snaps / t:,.0f}/s" if snaps is not None else ""
        print(f"{name:38s} {us:8.3f} us/bar  {us / base_us:7.1f}x baseline{extra}")
    print(f"aligner per bar vs chart aggregation per bar: {rows[2][1] / rows[1][1]:.2f}x")


if __name__ == "__main__":
    main()
