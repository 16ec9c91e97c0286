"""Gaps bus-wide: a subscriber that falls behind a small high-water mark loses messages, its gap
detector counts them, and ``middleware.stats`` and the dashboard's ``/metrics`` show them per topic prefix."""

from __future__ import annotations

import os
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aitrados.bus.gaps import GapLedger, topic_prefix
from aitrados.bus.pubsub import Subscriber
from aitrados.dashboard.launch import start_dashboard
from aitrados.middleware import Middleware

from conftest import bus_settings

pytestmark = pytest.mark.timeout(90)


def test_the_ledger_sums_per_prefix_and_caps_prefixes(monkeypatch) -> None:
    import aitrados.bus.gaps as g

    monkeypatch.setattr(g, "MAX_PREFIXES", 2)
    led = GapLedger()
    led.record("ohlc.STOCK:US:SPX.DAY", 3)
    led.record("ohlc.CRYPTO:GLOBAL:BTCUSD.1M", 2)
    led.record("fill.sma", 1)
    led.record("news.x", 4)  # a third prefix: over the cap, kept under _other
    assert led.snapshot() == {"ohlc": 5, "fill": 1, "_other": 4}
    assert topic_prefix("replay") == "replay"


def stats_gaps(mw: Middleware, prefix: str, at_least: int, timeout: float = 20.0) -> int:
    """The router's gap count for *prefix* once it reaches *at_least* (the snapshot refreshes each second)."""
    deadline = time.monotonic() + timeout
    with mw.rpc_client(timeout=10) as c:
        while True:
            n = c.call("middleware", "stats")["pubsub"].get("gaps", {}).get(prefix, 0)
            if n >= at_least or time.monotonic() > deadline:
                return n
            time.sleep(0.1)


def test_a_slow_subscriber_with_a_small_hwm_has_its_gaps_counted_bus_wide(ipc_dir: str) -> None:
    # the router queues at most 4 messages for a subscriber that does not read (4 KiB / 1 KiB)
    s = bus_settings(ipc_dir, subscriber_queue_bytes=4096, max_publish_size=1024)
    prefix = f"gaptest{os.getpid()}"  # the ledger is process-wide: a prefix no other test uses
    with Middleware(s) as mw:
        dash = start_dashboard(mw, 0)
        try:
            pub = mw.publisher()
            sub = Subscriber(mw.endpoints().subscribe, [prefix + "."], bus=mw.bus, context=mw.context, hwm=4)
            try:
                # the subscription reaches the publisher asynchronously: publish markers until one arrives
                deadline = time.monotonic() + 20
                while sub.recv(timeout=0.05) is None:
                    assert time.monotonic() < deadline, "the subscription never took effect"
                    pub.publish(f"{prefix}.warm", 0)
                while sub.recv(timeout=0.2) is not None:  # drain the markers
                    pass
                # the subscriber does not read while 20 000 messages go by: the queues overflow
                for i in range(20_000):
                    pub.publish(f"{prefix}.burst", i)
                got = 0
                last = None
                deadline = time.monotonic() + 30
                while True:  # read what was kept, then one more message after the hole reveals it
                    m = sub.recv(timeout=0.2)
                    if m is None:
                        assert time.monotonic() < deadline, "no message after the burst"
                        pub.publish(f"{prefix}.burst", -1)
                        continue
                    got += 1
                    last = m
                    if m.data == -1:
                        break
                missed = sub.stats.missed
                assert sub.stats.gaps >= 1 and missed > 0
                assert got + missed == last.seq  # every message either arrived or was counted missing
                assert stats_gaps(mw, prefix, missed) >= missed
                deadline = time.monotonic() + 20
                while True:  # /metrics serves the router's stats from the dashboard's next status poll
                    text = httpx.get(dash.url + "metrics", timeout=10).text
                    fams = {f.name: f.samples for f in text_string_to_metric_families(text)}
                    by = {x.labels["prefix"]: x.value for x in fams.get("aitrados_pubsub_gaps", [])}
                    if by.get(prefix, 0) >= missed:
                        break
                    assert time.monotonic() < deadline, by
                    time.sleep(0.2)
            finally:
                sub.close()
                pub.close()
        finally:
            dash.stop()
