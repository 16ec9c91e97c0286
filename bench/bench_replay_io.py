"""Replay I/O throughput: bars per second from the replay server through the clients, against a
baseline measured in the same run.

* Server: ``python -m aitrados.marketdata.replay_server`` in its own process, as fast as possible
  (speed 0), N crypto symbols of generated 1-minute bars.
* WS: our :class:`AitradosWSClient` subscribed to ``CRYPTO:GLOBAL:*`` receives every push until
  ``replay_end`` (decode, typed :class:`Bar`, per-symbol dedupe, async iterator).
* HTTP: our :class:`AitradosHTTPClient` pages through the same bars with ``ohlc_history``
  (limit 1000 per page).
* Baseline: the very same push messages (JSON bytes as the server sends them) decoded in this
  process into the same :class:`Bar` records, with no network and no client.

Prints bars/s and ratios (ours / baseline). Absolute figures drift between runs; the ratio is
the number to compare.

Run: python bench/bench_replay_io.py [--symbols N] [--days D]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import re
import subprocess
import sys
import time

import msgspec
from loguru import logger

from aitrados.marketdata.http_client import AitradosHTTPClient
from aitrados.marketdata.models import bar_from_record
from aitrados.marketdata.replay_store import ReplayStore, ws_bar_record
from aitrados.marketdata.ws_client import AitradosWSClient, ReplayEnd

START = dt.datetime(2018, 12, 24, 14, 30, tzinfo=dt.timezone.utc)


def baseline_messages(symbols: list[str], days: float) -> tuple[list[bytes], int]:
    """The push messages the server will send, one per tick (all symbols of one minute)."""
    store = ReplayStore(start=START, days=days, history_days=0, generated_symbols=symbols, bundled=False)
    by_close: dict[dt.datetime, list[dict]] = {}
    for b in store.stream_bars():
        by_close.setdefault(b.close_datetime, []).append(ws_bar_record(b))
    enc = msgspec.json.Encoder()
    msgs = [enc.encode({"message_type": "ohlc", "status": "ok", "code": 200, "message": "success",
                        "reference": None, "result": recs}) for _, recs in sorted(by_close.items())]
    return msgs, sum(len(r) for r in by_close.values())


def run_baseline(msgs: list[bytes]) -> tuple[int, float]:
    dec = msgspec.json.Decoder()
    t0 = time.perf_counter()
    n = 0
    for m in msgs:
        for rec in dec.decode(m)["result"]:
            bar_from_record(rec)
            n += 1
    return n, time.perf_counter() - t0


def start_server(symbols: list[str], days: float) -> tuple[subprocess.Popen[str], str, str]:
    cmd = [sys.executable, "-m", "aitrados.marketdata.replay_server", "--port", "0", "--speed", "0",
           "--autostart", "first_subscribe", "--autostart-grace", "0", "--start", START.isoformat(), "--days", str(days),
           "--symbols", *symbols]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "NO_PROXY": "127.0.0.1"})
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        m = re.search(r"replay server: (http://\S+)\s+ws: (ws://\S+)/ws", line)
        if m:
            return proc, m.group(1), m.group(2)
        if proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError("replay server did not start")


async def run_ws(ws_url: str) -> tuple[int, float]:
    n = 0
    async with AitradosWSClient(ws_url, "bench", max_reconnect_attempts=3) as c:
        t0 = time.perf_counter()
        await c.subscribe_ohlc("CRYPTO:GLOBAL:*")
        async for rec in c:
            if isinstance(rec, ReplayEnd):
                break
            n += 1
        return n, time.perf_counter() - t0


def run_http(http_url: str, symbols: list[str], days: float) -> tuple[int, float]:
    end = START + dt.timedelta(days=days)
    n = 0
    with AitradosHTTPClient(http_url, "bench") as c:
        t0 = time.perf_counter()
        for fs in symbols:
            n += len(c.ohlc_history(fs, "1M", START, end, limit=1000))
        return n, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=20)
    ap.add_argument("--days", type=float, default=1.0)
    a = ap.parse_args()
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    symbols = [f"CRYPTO:GLOBAL:C{i:03d}USD" for i in range(a.symbols)]
    msgs, total = baseline_messages(symbols, a.days)
    n_base, t_base = run_baseline(msgs)
    proc, http_url, ws_url = start_server(symbols, a.days)
    try:
        n_ws, t_ws = asyncio.run(run_ws(ws_url))
        n_http, t_http = run_http(http_url, symbols, a.days)
    finally:
        proc.terminate()
        proc.wait(10)
    base = n_base / t_base
    print(f"bars: {total} ({a.symbols} symbols x {a.days:g} day(s) of 1M bars, {len(msgs)} pushes)")
    print(f"baseline  decode same JSON pushes -> Bar, in process : {base:12,.0f} bars/s")
    print(f"ours      replay server -> WS client (own process)   : {n_ws / t_ws:12,.0f} bars/s  "
          f"ratio {n_ws / t_ws / base:.2f}x  ({n_ws} bars)")
    print(f"ours      replay server -> HTTP client, 1000/page    : {n_http / t_http:12,.0f} bars/s  "
          f"ratio {n_http / t_http / base:.2f}x  ({n_http} bars)")
    if n_ws != total or n_http != total:
        print(f"WARNING: expected {total} bars, got WS {n_ws}, HTTP {n_http}")


if __name__ == "__main__":
    main()
