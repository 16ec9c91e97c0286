"""CPU per bar of the whole loop's in-process part: pushes decoded, hub, chart flow, trading runtime, engine.

    python bench/profile_loop_hub.py [--symbols 100] [--days 5] [--push msgpack|json]

What ``bench_loop_scale.py`` runs in the middleware's runtime thread, without sockets to read or
threads to share the GIL with: the same generated 1-minute bars, grouped into one push per time
step (as the replay server sends them, encoded as ``--push``), are decoded by the WebSocket
client's code, handed to a :class:`~aitrados.marketdata.hub.MarketDataHub` with a window per
symbol, and consumed by a :class:`~aitrados.trading.runtime.TradingRuntime` (a strategy that keeps
the last bar) and the report's price history. The hub publishes both messages of every bar to an
XSUB socket in the same process (nothing subscribes, so libzmq drops them in C). Prints the CPU
time per bar (``time.process_time``, steadier than wall time on a loaded machine); run it under
``py-spy record`` to see which part costs what. Not a test: no assertion on speed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


async def run(n: int, days: float, push: str) -> tuple[int, float]:
    """Feed the pushes through the hub; :returns: (bars, CPU seconds)."""
    import msgspec
    import zmq

    import bench_loop_scale as B
    from aitrados.bus.pubsub import Publisher
    from aitrados.marketdata.binary_push import decode_ohlc_push, encode_ohlc_push
    from aitrados.marketdata.http_client import AsyncAitradosHTTPClient
    from aitrados.marketdata.hub import MarketDataHub
    from aitrados.marketdata.replay_store import ReplayStore, ws_bar_record
    from aitrados.marketdata.settings import MarketDataSettings
    from aitrados.marketdata.ws_client import fast_ohlc_bars
    from aitrados.trading.engine import TradingEngine
    from aitrados.trading.report_html import PriceHistory
    from aitrados.trading.runtime import TradingRuntime

    s = B.md_settings(n, days)
    store = ReplayStore(start=s.replay_start, days=days, history_days=s.replay_history_days,
                        generated_symbols=B.symbols(n), bundled=False, seed=s.replay_seed)
    steps: dict[object, list] = {}
    for b in store.stream_bars():
        steps.setdefault(b.close_datetime, []).append(b)
    if push == "msgpack":
        msgs: list = [encode_ohlc_push(v) for v in steps.values()]
        decode = decode_ohlc_push
    else:
        msgs = [msgspec.json.encode({"message_type": "ohlc", "result": [ws_bar_record(b) for b in v]}).decode()
                for v in steps.values()]
        decode = fast_ohlc_bars
    ctx = zmq.Context()
    sink = ctx.socket(zmq.XSUB)
    sink.bind(f"inproc://profile-loop-hub-{os.getpid()}")
    pub = Publisher(f"inproc://profile-loop-hub-{os.getpid()}", context=ctx)
    http = AsyncAitradosHTTPClient("http://127.0.0.1:9", "unused", settings=MarketDataSettings())
    hub = MarketDataHub(pub, http, "ws://127.0.0.1:9", "unused", window_size=150)
    trading = TradingRuntime(TradingEngine([B.noop(n)]), pub, interval="1M")
    hub.consumers += [trading, PriceHistory().record]
    for fs in B.symbols(n):
        hub.flow.add(fs, "1M")
    cpu = time.process_time()
    for m in msgs:
        await hub.ws._deliver_bars(decode(m))
    cpu = time.process_time() - cpu
    pub.close()
    sink.close(0)
    await http.aclose()
    ctx.term()
    return hub.counts["bars_in"], cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=100)
    ap.add_argument("--days", type=float, default=5.0, help="calendar days (5 = 3 trading days from 2018-03-05)")
    ap.add_argument("--push", choices=["msgpack", "json"], default="msgpack", help="how the pushes are encoded")
    a = ap.parse_args()
    from aitrados.log import setup_logging

    setup_logging("WARNING")
    bars, cpu = asyncio.run(run(a.symbols, a.days, a.push))
    print(f"{bars:,} bars, {a.push} pushes: {cpu / max(1, bars) * 1e6:.2f} µs of CPU a bar "
          f"(load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
