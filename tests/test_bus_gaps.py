"""Gaps bus-wide: a subscriber that falls behind a small high-water mark loses messages, its gap
detector counts them, and ``middleware.stats`` and the dashboard's ``/metrics`` show them per topic
prefix, whether the subscriber runs in the middleware's process or reports from another one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aitrados.bus.errors import BusError
from aitrados.bus.gaps import GapLedger, GapReports, process_id, topic_prefix
from aitrados.bus.pubsub import Publisher, Subscriber
from aitrados.dashboard.launch import start_dashboard
from aitrados.middleware import Middleware

from conftest import PYTHON, bus_settings, child_env

pytestmark = pytest.mark.timeout(90)
#: The router queues at most 4 messages for a subscriber that does not read (4 KiB / 1 KiB).
SMALL_QUEUES = {"subscriber_queue_bytes": 4096, "max_publish_size": 1024}


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


def test_reports_replace_each_other_and_bad_ones_are_refused() -> None:
    led = GapLedger()
    led.record("ohlc.x", 2)
    rep = GapReports(led)
    rep.report("1@a", {"ohlc": 5})
    rep.report("1@a", {"ohlc": 7, "fill": 1})  # running totals: the later report replaces the earlier
    rep.report(process_id(), {"ohlc": 100})  # this process: its ledger counts already
    assert rep.totals() == {"ohlc": 9, "fill": 1}
    for reporter, gaps in (("", {}), (5, {}), ("2@b", {"ohlc": -1}), ("2@b", {"ohlc": True}), ("2@b", [1]),
                           ("2@b", {"p%d" % i: 1 for i in range(101)})):
        with pytest.raises(ValueError):
            rep.report(reporter, gaps)
    assert rep.totals() == {"ohlc": 9, "fill": 1}


def flood_until_gap(pub: Publisher, sub: Subscriber, prefix: str) -> tuple[int, int, int]:
    """Publish 20 000 messages on *prefix* while *sub* does not read, then read what was kept and one
    message after the hole; returns (received, missed, last sequence number)."""
    deadline = time.monotonic() + 20
    while sub.recv(timeout=0.05) is None:  # the subscription reaches the publisher asynchronously
        assert time.monotonic() < deadline, "the subscription never took effect"
        pub.publish(f"{prefix}.warm", 0)
    while sub.recv(timeout=0.2) is not None:  # drain the markers
        pass
    for i in range(20_000):
        pub.publish(f"{prefix}.burst", i)
    got = 0
    deadline = time.monotonic() + 30
    while True:
        m = sub.recv(timeout=0.2)
        if m is None:  # the queue is empty: one more message shows the hole
            assert time.monotonic() < deadline, "no message after the burst"
            pub.publish(f"{prefix}.burst", -1)
            continue
        if m.topic != f"{prefix}.burst":  # a warm-up marker still in flight after the drain
            continue
        got += 1
        if m.data == -1:
            return got, sub.stats.missed, m.seq


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
    prefix = f"gaptest{os.getpid()}"  # the ledger is process-wide: a prefix no other test uses
    with Middleware(bus_settings(ipc_dir, **SMALL_QUEUES)) as mw:
        dash = start_dashboard(mw, 0)
        try:
            with mw.publisher() as pub, Subscriber(mw.endpoints().subscribe, [prefix + "."], bus=mw.bus,
                                                  context=mw.context, hwm=4) as sub:
                got, missed, last = flood_until_gap(pub, sub, prefix)
                assert sub.stats.gaps >= 1 and missed > 0
                assert got + missed == last  # every message either arrived or was counted missing
            assert stats_gaps(mw, prefix, missed) >= missed
            deadline = time.monotonic() + 20
            while True:  # /metrics serves the router's stats from the dashboard's next status poll
                text = httpx.get(dash.url + "metrics", timeout=10).text
                by = {x.labels["prefix"]: x.value for f in text_string_to_metric_families(text)
                      if f.name == "aitrados_pubsub_gaps" for x in f.samples}
                if by.get(prefix, 0) >= missed:
                    break
                assert time.monotonic() < deadline, by
                time.sleep(0.2)
        finally:
            dash.stop()


def child(publish: str, subscribe: str, rpc: str, prefix: str) -> None:
    """In another process: miss messages behind a small queue, report the ledger, print the counts."""
    from aitrados.bus.client import RPCClient
    from aitrados.bus.gaps import GapReporter

    with Publisher(publish) as pub, Subscriber(subscribe, [prefix + "."], hwm=4) as sub, \
            RPCClient(rpc, timeout=10) as c:
        got, missed, last = flood_until_gap(pub, sub, prefix)
        reporter = GapReporter(c.call)
        sent = reporter.report()
        again = reporter.report()  # nothing changed: nothing sent
    print(json.dumps({"got": got, "missed": missed, "last": last, "sent": sent, "again": again}), flush=True)


def test_gaps_of_a_subscriber_in_another_process_are_reported_to_the_middleware(ipc_dir: str) -> None:
    prefix = f"gapchild{os.getpid()}"
    s = bus_settings(ipc_dir, **SMALL_QUEUES)
    with Middleware(s) as mw:
        ep = mw.endpoints("ipc")
        code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import test_bus_gaps as t; "
                f"t.child({ep.publish!r}, {ep.subscribe!r}, {ep.rpc_frontend!r}, {prefix!r})")
        r = subprocess.run([PYTHON, "-c", code], env=child_env(s), capture_output=True, text=True, timeout=80)
        assert r.returncode == 0, r.stderr[-3000:]
        out = json.loads(r.stdout.strip().splitlines()[-1])
        assert out["missed"] > 0 and out["got"] + out["missed"] == out["last"]
        assert out["sent"] is True and out["again"] is False
        assert stats_gaps(mw, prefix, out["missed"]) == out["missed"]
        with mw.rpc_client(timeout=10) as c, pytest.raises(BusError, match="gaps must be"):
            c.call("middleware", "report_gaps", reporter="1@x", gaps={"ohlc": "many"})
