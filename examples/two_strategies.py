"""Two strategies side by side, one of them in its own process, sharing one chart flow.

    python examples/two_strategies.py

`sma_cross` runs inside the middleware; `rsi_reversion` runs in a worker process of its own
(`--isolate`), receives the same bars over the bus and trades the same paper account through
the `trading` RPC service. Both need S&P 500 daily bars: the middleware's one chart flow
hydrates that window once — the replay server's request counter shows a single
`ohlc_latest` request — and streams it once to both.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter

from aitrados.log import setup_logging
from aitrados.runtime import Runtime
from aitrados.settings import load_settings


def main() -> int:
    settings = load_settings()
    setup_logging("WARNING")
    settings.trading.report_dir = os.environ.get("AITRADOS_TRADING__REPORT_DIR") or tempfile.mkdtemp(prefix="two-")
    rt = Runtime(settings, plugins=["sma_cross", "rsi_reversion"], isolate=["rsi_reversion"], exit_at_end=True)
    rt.start()
    rt.wait_replay(300)  # until the report is written
    requests = dict(rt.replay.server.state()["requests"])  # the replay server's request counter
    workers = {w.name: w.pid for w in rt.host.supervisor.workers.values()}
    fills = Counter(f.strategy for f in rt.trading.engine.broker.fills())
    code = rt.wait()
    print(f"middleware pid {os.getpid()}; isolated workers: {workers}")
    print(f"fills per strategy: {dict(fills)}")
    print(f"replay server requests: {requests}")
    print(f"report: {settings.trading.report_dir}")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
