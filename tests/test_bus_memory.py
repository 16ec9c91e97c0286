"""Memory of the pub/sub router: a subscriber that never reads pins queued messages, and the
memory goes back to the operating system once it leaves (a real middleware in a child process,
its resident size read from /proc)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import zmq

from aitrados.bus import Publisher, RPCClient
from aitrados.bus.addresses import endpoints_for

from conftest import PYTHON, bus_settings, child_env

pytestmark = [pytest.mark.timeout(120),
              pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc (Linux)")]

MIB = 1024 * 1024


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def wait_for(fn, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while not (v := fn()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return v


def warm_up(pub: Publisher, c: RPCClient) -> None:
    """Publish a small message until the router counts it: the publisher has its subscription."""
    wait_for(lambda: pub.publish("warm.up", 0) and "warm.up" in c.call("middleware", "topics"), "the publisher to connect")


def flush(pub: Publisher, c: RPCClient, topic: str, sent: int) -> int:
    """Wait until the router has forwarded every message published on ``topic``; returns how many
    were published in all. Proof is the monitor's count reaching the newest sequence number. The
    monitor's tap has a bounded queue: a burst's tail may be dropped there, so when the count stalls
    a one-byte message follows (it lands once the monitor has caught up)."""
    for _ in range(30):  # bounded: each round waits up to 5 s
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            if c.call("middleware", "topics").get(topic, {}).get("count") == sent:
                return sent
            time.sleep(0.05)
        pub.publish_raw(topic, b"\xc0")
        sent += 1
    raise AssertionError(f"the router never counted {sent} messages on {topic}")


def test_memory_returns_after_a_slow_subscriber_leaves(ipc_dir: str) -> None:
    s = bus_settings(ipc_dir, max_publish_size=MIB)
    code = textwrap.dedent("""
        import sys
        from aitrados.middleware import Middleware
        with Middleware() as mw:
            print("READY", flush=True)
            sys.stdin.read()
    """)
    env = dict(child_env(s), AITRADOS_BUS__MAX_PUBLISH_SIZE=str(MIB))
    proc = subprocess.Popen([PYTHON, "-c", code], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "READY"
        ep = endpoints_for(s.bus, "ipc")
        ctx = zmq.Context.instance()
        slow = ctx.socket(zmq.SUB)  # subscribes, then never reads
        slow.linger = 0
        slow.rcvhwm = 1
        slow.setsockopt(zmq.RCVBUF, 4096)
        slow.setsockopt(zmq.SUBSCRIBE, b"big.")
        slow.connect(ep.subscribe)
        with RPCClient(ep.rpc_frontend, timeout=5) as c:
            wait_for(lambda: c.call("middleware", "stats")["pubsub"]["subscriptions_total"] >= 1, "the subscription")
            base = rss(proc.pid)
            body = b"x" * MIB
            with Publisher(ep.publish, bus=s.bus) as pub:
                warm_up(pub, c)
                for _ in range(300):
                    pub.publish_raw("big.blob", body)
                # the router holds most of the 300 MiB for the subscriber that does not read
                wait_for(lambda: rss(proc.pid) > base + 150 * MIB, "the queue to fill")
                peak = rss(proc.pid)
            slow.close(0)
            wait_for(lambda: c.call("middleware", "stats")["pubsub"]["subscriptions_total"] == 0, "the unsubscribe")
            wait_for(lambda: rss(proc.pid) < base + 60 * MIB, "memory back near the baseline")
            after = rss(proc.pid)
        print(f"router RSS: baseline {base / MIB:.0f} MiB, peak {peak / MIB:.0f} MiB, after {after / MIB:.0f} MiB",
              file=sys.stderr)
    finally:
        proc.stdin.close()  # type: ignore[union-attr]
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_a_subscriber_that_never_reads_pins_at_most_the_byte_bound(ipc_dir: str) -> None:
    """subscriber_queue_bytes / max_publish_size messages are kept for it; the rest are dropped and
    show up as a gap when it finally reads."""
    from aitrados.bus import Subscriber
    from aitrados.middleware import Middleware

    s = bus_settings(ipc_dir, max_publish_size=MIB, subscriber_queue_bytes=16 * MIB)
    with Middleware(s) as mw, mw.rpc_client(timeout=5) as c:
        assert mw.pubsub.subscriber_hwm == 16
        ep = mw.endpoints("ipc")
        with Subscriber(ep.subscribe, ["big."], hwm=1, decode=False) as sub, Publisher(ep.publish, bus=s.bus) as pub:
            wait_for(lambda: c.call("middleware", "stats")["pubsub"]["subscriptions_total"] >= 1, "the subscription")
            with pytest.raises(ValueError, match="max_publish_size"):
                pub.publish_raw("big.blob", b"x" * (MIB + 1))  # refused before it is sent
            warm_up(pub, c)
            body = b"x" * MIB
            for _ in range(200):
                pub.publish_raw("big.blob", body)
            flush(pub, c, "big.blob", 200)
            got = 0
            for _ in range(400):  # bounded: at most 200 can come
                if sub.recv(timeout=2) is None:
                    break
                got += 1
            pub.publish_raw("big.blob", b"\xc0")  # one more, now that it reads: the drops show as a gap
            assert sub.recv(timeout=10) is not None
        # 16 at the router, one in the subscriber's queue, a few in socket buffers; never the 200
        assert 1 <= got <= 16 + 1 + 8, got
        assert sub.stats.missed >= 200 - got - 8 and sub.stats.gaps >= 1
