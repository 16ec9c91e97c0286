"""Per-bar cost of RSI14 + SMA20 + SMA50: incremental (aitrados.trading.indicators) vs `ta` on a 500-row window.

Both run in this process on the bundled S&P 500 daily closes. The baseline recomputes the
three `ta` indicators over the last 500 closes for each new bar (what a strategy does when it
calls `ta` on its chart window); ours updates three O(1) objects. Prints µs per bar and the
ratio. Run: ``python bench/bench_indicators.py [--ta-bars N]`` (needs ``ta``: extra ``bench`` or ``test``).
"""

from __future__ import annotations

import argparse
import time

import pandas as pd
import ta

from aitrados.marketdata.loader import bundled_bar_files, load_bars
from aitrados.trading.indicators import RSI, SMA

WINDOW = 500


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ta-bars", type=int, default=300, help="bars to time the ta baseline on (it is slow)")
    args = ap.parse_args()
    closes = [b.close for b in load_bars(bundled_bar_files()[("STOCK:US:SPX", "DAY")]).bars]
    series = pd.Series(closes)

    # ours: every bar of the file, three incremental indicators
    rsi, s20, s50 = RSI(14), SMA(20), SMA(50)
    t0 = time.perf_counter()
    for x in closes:
        rsi.update(x)
        s20.update(x)
        s50.update(x)
    ours_us = (time.perf_counter() - t0) / len(closes) * 1e6
    ours_last = (rsi.value, s20.value, s50.value)

    # baseline: ta over the trailing 500-row window, for the last --ta-bars bars
    n = min(args.ta_bars, len(closes) - WINDOW)
    start = len(closes) - n
    t0 = time.perf_counter()
    for i in range(start, len(closes)):
        w = series.iloc[i + 1 - WINDOW: i + 1]
        r = ta.momentum.RSIIndicator(w, window=14).rsi().iloc[-1]
        a = ta.trend.SMAIndicator(w, window=20).sma_indicator().iloc[-1]
        b = ta.trend.SMAIndicator(w, window=50).sma_indicator().iloc[-1]
    ta_us = (time.perf_counter() - t0) / n * 1e6

    # the two agree on the SMAs exactly; the RSI on a 500-row window differs slightly from the
    # full-history RSI (its smoothing starts at the window's first row), printed for reference
    print(f"bars: ours {len(closes)}, ta {n} (window {WINDOW})")
    print(f"last values  ours: RSI {ours_last[0]:.4f} SMA20 {ours_last[1]:.4f} SMA50 {ours_last[2]:.4f}")
    print(f"             ta  : RSI {r:.4f} SMA20 {a:.4f} SMA50 {b:.4f}")
    print(f"incremental RSI14+SMA20+SMA50: {ours_us:8.2f} µs/bar")
    print(f"ta on a {WINDOW}-row window     : {ta_us:8.2f} µs/bar")
    print(f"ratio ta / incremental       : {ta_us / ours_us:8.0f}x")


if __name__ == "__main__":
    main()
