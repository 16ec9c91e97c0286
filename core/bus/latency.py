"""Fixed-bucket latency counts the RPC router keeps per service (for ``middleware.stats``).

The router records the arrival time of each request in the entry it already keeps per request
in flight and, when the reply comes back, adds the round trip (request arrival at the router to
reply arrival, i.e. the time spent in the worker and its queues) to the service's
:class:`LatencyBuckets`: one bisect and two additions per reply, no allocation. Readers
(``middleware.stats`` → the dashboard's ``/metrics``) get cumulative counts per upper bound,
the shape of a Prometheus histogram.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

#: Upper bounds of the buckets in seconds (the last, +Inf, is implied).
BOUNDS: tuple[float, ...] = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                             0.5, 1.0, 2.5, 5.0, 10.0)


class LatencyBuckets:
    """Counts of durations per bucket of :data:`BOUNDS` (plus +Inf) and their sum, for one service.

    Only the router thread writes; a reader may see a count and a sum one observation apart,
    which a scrape tolerates.
    """

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts: list[int] = [0] * (len(BOUNDS) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        """Count one duration of *seconds* (the bucket is the first bound at or above it)."""
        self.counts[bisect_left(BOUNDS, seconds)] += 1
        self.total += seconds

    def snapshot(self) -> dict[str, Any]:
        """``{"bounds": [...], "counts": [...], "sum": s, "count": n}``: per-bucket (not cumulative)
        counts, the last one for durations above every bound."""
        counts = list(self.counts)
        return {"bounds": list(BOUNDS), "counts": counts, "sum": self.total, "count": sum(counts)}
