"""A service in its own process, reaching a running middleware over ipc (or tcp).

    aitrados run &                                  # terminal 1: the middleware
    python examples/worker_process.py               # terminal 2: this worker
    aitrados call stats mean values='[1, 2, 3.5]'   # terminal 3: a client

Stop with Ctrl-C. Start it twice to see requests spread over two workers (`aitrados status`).
"""

from __future__ import annotations

import statistics
import time

from aitrados.bus import Service, ServiceWorker, rpc_method
from aitrados.bus.addresses import endpoints_for
from aitrados.log import setup_logging
from aitrados.settings import load_settings


class Stats(Service):
    name = "stats"

    def mean(self, values: list[float]) -> float:
        return statistics.fmean(values)

    @rpc_method(blocking=True)  # CPU work runs in a thread pool; other calls keep flowing
    def primes_below(self, n: int) -> int:
        return sum(all(k % d for d in range(2, int(k**0.5) + 1)) for k in range(2, n))


def main() -> None:
    settings = load_settings()
    setup_logging(settings.log_level)
    backend = endpoints_for(settings.bus).rpc_backend  # ipc on this host; AITRADOS_BUS__TRANSPORT=tcp for tcp
    worker = ServiceWorker(Stats(), backend, bus=settings.bus).start()
    print(f"serving 'stats' at {backend}; Ctrl-C to stop", flush=True)
    try:
        while worker.failure is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    worker.stop()


if __name__ == "__main__":
    main()
