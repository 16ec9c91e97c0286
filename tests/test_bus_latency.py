"""RPC latency per service, counted by the router for every call (``middleware.stats`` ``rpc.latency``)."""

from __future__ import annotations

import time

import pytest

from aitrados.bus.latency import BOUNDS, LatencyBuckets
from aitrados.bus.service import Service
from aitrados.middleware import Middleware

pytestmark = pytest.mark.timeout(60)


class Echo(Service):
    name = "echo"

    def echo(self, value: int) -> int:
        return value

    def slow(self) -> str:
        time.sleep(0.06)
        return "done"


def test_buckets_put_each_duration_at_the_first_bound_at_or_above_it() -> None:
    lat = LatencyBuckets()
    for s in (0.0, BOUNDS[0], BOUNDS[0] * 1.01, 0.06, BOUNDS[-1] * 2):
        lat.observe(s)
    snap = lat.snapshot()
    assert snap["count"] == 5 and snap["sum"] == pytest.approx(sum((0.0, BOUNDS[0], BOUNDS[0] * 1.01, 0.06,
                                                                     BOUNDS[-1] * 2)))
    assert snap["counts"][0] == 2 and snap["counts"][1] == 1 and snap["counts"][-1] == 1
    assert snap["counts"][BOUNDS.index(0.1)] == 1  # 0.06 s: above 0.05, at most 0.1


def test_every_call_through_the_router_is_counted_per_service(mw: Middleware) -> None:
    worker = mw.serve(Echo())
    try:
        with mw.rpc_client(timeout=10) as c:
            for i in range(25):
                assert c.call("echo", "echo", value=i) == i
            assert c.call("echo", "slow") == "done"
            lat = c.call("middleware", "stats")["rpc"]["latency"]
        echo = lat["echo"]
        assert echo["bounds"] == list(BOUNDS) and len(echo["counts"]) == len(BOUNDS) + 1
        assert echo["count"] == 26 and sum(echo["counts"]) == 26
        # the slow call spent at least 60 ms in the worker: it lies above the 50 ms bound, and
        # the sum of every round trip is at least that long
        above = sum(n for b, n in zip([*BOUNDS, float("inf")], echo["counts"]) if b > 0.05)
        assert above >= 1 and echo["sum"] >= 0.06
        assert "middleware" not in lat  # the router answers that one itself: no round trip to measure
    finally:
        worker.stop()
