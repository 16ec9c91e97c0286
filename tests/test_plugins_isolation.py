"""Isolated plugins in real worker processes: events, risk checks, crash and restart, giving up, no orphans."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fixtures.plugin_env import install

from aitrados.bus import Message
from aitrados.bus.tokens import token_path
from aitrados.pluginhost.host import PluginHost
from aitrados.pluginhost.isolation import backoff_delay
from aitrados.marketdata.models import NewsItem
from aitrados.middleware import Middleware
from aitrados.pluginhost.settings import PluginHostSettings
from aitrados.pluginhost.errors import PluginLoadError

from conftest import clean_environ

pytestmark = pytest.mark.timeout(90)

FAST = dict(restart_backoff=0.05, restart_backoff_max=0.2, worker_start_timeout=30, check_timeout=3.0)


def alive(pid: int) -> bool:
    """True if *pid* runs and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_for(pred: Callable[[], Any], timeout: float = 15.0, step: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


class Bus:
    """The test's own publisher and subscriber on the middleware."""

    def __init__(self, mw: Middleware, prefixes: list[str]) -> None:
        self.pub = mw.publisher()
        self.sub = mw.subscriber(prefixes)
        self.got: list[Message] = []

    def drain(self) -> list[Message]:
        while (m := self.sub.recv(timeout=0.01)) is not None:
            self.got.append(m)
        return self.got

    def until(self, topic: str, resend: tuple[str, Any] | None = None, timeout: float = 15.0) -> list[Message]:
        """Messages on *topic* once at least one came; re-publishes *resend* until then (slow joiners)."""
        def look() -> list[Message]:
            if resend is not None:
                self.pub.publish(*resend)
            return [m for m in self.drain() if m.topic == topic]
        return wait_for(look, timeout, step=0.05) or []

    def close(self) -> None:
        self.pub.close()
        self.sub.close()


@pytest.fixture
def env(tmp_path, monkeypatch, mw) -> Iterator[tuple[Middleware, Callable[..., PluginHost], Bus]]:
    install(tmp_path, monkeypatch)
    hosts: list[PluginHost] = []
    bus = Bus(mw, ["test."])

    def make(names: list[str], isolate: list[str], strict: bool = False, **hs: Any) -> PluginHost:
        h = PluginHost(mw.settings, names=names, isolate=isolate, strict=strict,
                       host_settings=PluginHostSettings(**{**FAST, **hs}))
        hosts.append(h)
        return h.start(mw)

    yield mw, make, bus
    for h in hosts:
        h.stop()
    bus.close()


def test_an_isolated_plugin_gets_the_same_events_in_its_own_process(env) -> None:
    mw, make, bus = env
    h = make(["recorder"], isolate=["recorder"])
    assert h.registry.loaded() == []  # not imported into the host's process
    w = h.supervisor.workers["recorder"]
    assert w.status == "running" and "on_news" in w.hooks and w.pid != os.getpid()
    item = NewsItem(time_utc := __import__("datetime").datetime(2024, 1, 2, tzinfo=__import__("datetime").timezone.utc),
                    "isolated hello")
    seen = bus.until("test.seen.on_news", resend=("news.STOCK:US:SPY", item))
    assert seen and seen[0].data["pid"] == w.pid
    assert seen[0].data["value"]["type"] == "NewsItem" and seen[0].data["value"]["title"] == "isolated hello"
    assert seen[0].data["value"]["published_date"] == time_utc
    st = h.status()
    assert st["plugins"][0]["status"] == "isolated" and st["workers"][0]["status"] == "running"
    pid = w.pid
    h.stop()
    assert not alive(pid)  # stopping the host stops its workers


def test_isolated_check_order_is_asked_over_rpc_and_fails_closed(env) -> None:
    mw, make, bus = env
    h = make(["crasher", "risk"], isolate=["crasher"])
    assert h.check_order({"symbol": "A", "quantity": 5}, {}).accepted
    no = h.check_order({"symbol": "A", "quantity": 20}, {"max_quantity": 1000})
    assert (no.accepted, no.reason, no.plugin) == (False, "isolated says no", "crasher")
    # in-process plugins decide first
    assert h.check_order({"symbol": "OK", "quantity": 20}, {}).accepted
    # aitrados records reach the isolated hook as the same types an in-process hook gets
    from aitrados.trading.orders import Order
    from aitrados.trading.risk import RiskContext

    t = __import__("datetime").datetime(2024, 3, 1, tzinfo=__import__("datetime").timezone.utc)
    order = Order(1, "STOCK:US:SPY", "buy", 50.0, "market", t)
    typed = h.check_order(order, RiskContext(now=t, position=0.0, price=10.0, equity=1e4))
    assert typed.reason == "isolated says no to Order with RiskContext at 2024-03-01"
    assert h.check_order(Order(2, "STOCK:US:SPY", "buy", 5.0, "market", t),
                         RiskContext(now=t, position=0.0, price=10.0, equity=1e4)).accepted
    # too slow (the hook sleeps 5 s, check_timeout is 3 s): rejected
    late = h.check_order({"symbol": "SLOW", "quantity": 1}, {})
    assert not late.accepted and "RPCTimeoutError" in late.reason


def test_a_worker_that_crashes_is_restarted(env) -> None:
    mw, make, bus = env
    h = make(["crasher"], isolate=["crasher"])
    w = h.supervisor.workers["crasher"]
    first = w.pid
    dt = __import__("datetime")
    t = dt.datetime(2024, 1, 2, tzinfo=dt.timezone.utc)
    assert bus.until("test.news", resend=("news.X", NewsItem(t, "before")))[0].data["pid"] == first
    bus.pub.publish("news.X", NewsItem(t, "crash"))
    assert wait_for(lambda: w.starts == 2 and w.status == "running" and w.pid != first)
    assert not alive(first) and w.restarts == 1
    bus.got.clear()
    after = bus.until("test.news", resend=("news.X", NewsItem(t, "after")))
    assert after[-1].data == {"pid": w.pid, "title": "after"}


def test_the_supervisor_gives_up_after_the_limit(env) -> None:
    from loguru import logger

    mw, make, bus = env
    loud: list[str] = []
    sink = logger.add(lambda m: loud.append(str(m)), level="CRITICAL")
    h = make(["dies_at_start"], isolate=["dies_at_start"], restart_limit=2)
    w = h.supervisor.workers["dies_at_start"]
    assert wait_for(lambda: w.status == "gave up")
    assert w.starts == 3 and w.restarts == 3 and "died 3 times in a row (last exit code 9)" in w.reason
    logger.remove(sink)
    assert len(loud) == 1 and "GIVING UP on worker 'dies_at_start'" in loud[0]
    time.sleep(0.5)
    assert w.starts == 3  # really given up
    with pytest.raises(PluginLoadError, match="dies_at_start"):
        make(["dies_at_start"], isolate=["dies_at_start"], restart_limit=0, strict=True)


def test_a_worker_that_cannot_load_its_plugin_is_not_restarted(env) -> None:
    mw, make, bus = env
    h = make(["import_error", "recorder"], isolate=["import_error"])
    w = h.supervisor.workers["import_error"]
    assert w.status == "failed" and "aitrados_no_such_module" in w.reason and w.starts == 1
    assert h.registry.loaded() == ["recorder"]  # the rest runs
    assert "aitrados_no_such_module" in h.status()["plugins"][0]["reason"]


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff_delay(n, 0.5, 3.0) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


PARENT = textwrap.dedent("""
    import sys, time
    from aitrados.pluginhost.host import PluginHost
    from aitrados.middleware import Middleware
    from aitrados.settings import load_settings
    s = load_settings(bus={"name": sys.argv[1], "ipc_dir": sys.argv[2], "rpc_frontend_port": 0,
                           "rpc_backend_port": 0, "sub_port": 0, "pub_port": 0})
    mw = Middleware(s).start()
    h = PluginHost(s, names=["recorder"], isolate=["recorder"]).start(mw)
    print(h.supervisor.workers["recorder"].pid, flush=True)
    time.sleep(120)
""")


def test_no_orphans_when_the_host_process_is_killed(tmp_path, monkeypatch, ipc_dir) -> None:
    install(tmp_path, monkeypatch)
    parent = subprocess.Popen([sys.executable, "-c", PARENT, f"orph{os.getpid()}", ipc_dir],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = parent.stdout.readline()  # type: ignore[union-attr]
        worker = int(line)
        assert alive(worker)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        assert wait_for(lambda: not alive(worker), timeout=10), "the worker outlived its host"
    finally:
        parent.kill()
        parent.wait(10)


def worker_cmd() -> list[str]:
    return [sys.executable, "-m", "aitrados", "worker"]


def test_a_worker_started_by_hand_over_tcp(env, settings) -> None:
    mw, make, bus = env
    frontend = mw.endpoints("tcp").rpc_frontend
    token = str(token_path(mw.bus, "service"))  # handed over by file, as to a worker on another host
    proc = subprocess.Popen([*worker_cmd(), "--plugins", "recorder", "--connect", frontend, "--name", "byhand",
                             "--token-file", token],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith("AITRADOS-WORKER-READY "), proc.stderr.read() if proc.poll() is not None else line
        with mw.rpc_client(timeout=5) as c:
            assert c.call("worker.byhand", "ping")["pid"] == proc.pid
            services = c.call("middleware", "services")
        assert services["worker.byhand"]["workers"][0]["pid"] == proc.pid
        seen = bus.until("test.seen.on_position", resend=("position.STOCK:US:SPY", {"qty": 3}))
        assert seen[0].data == {"pid": proc.pid, "value": {"qty": 3}}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        proc.kill()
        proc.wait(5)


def test_a_worker_by_hand_reaches_a_curve_secured_middleware(tmp_path, monkeypatch, ipc_dir) -> None:
    from conftest import bus_settings

    from aitrados.bus.security import make_keys

    install(tmp_path, monkeypatch)
    keys = make_keys(tmp_path / "keys")
    s = bus_settings(ipc_dir, curve_secret_key_file=str(keys["server_secret"]))
    with Middleware(s) as mw:
        bus = Bus(mw, ["test."])
        env = {**clean_environ(), "AITRADOS_BUS__CURVE_PUBLIC_KEY_FILE": str(keys["server_public"]),
               "AITRADOS_BUS__CURVE_CLIENT_SECRET_KEY_FILE": str(keys["client_secret"])}
        proc = subprocess.Popen([*worker_cmd(), "--plugins", "recorder", "--connect", mw.endpoints("tcp").rpc_frontend,
                                 "--token-file", str(token_path(mw.bus, "service"))],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        try:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            assert line.startswith("AITRADOS-WORKER-READY "), proc.stderr.read() if proc.poll() is not None else line
            seen = bus.until("test.seen.on_fill", resend=("fill.STOCK:US:SPY", {"order_id": 7}))
            assert seen[0].data == {"pid": proc.pid, "value": {"order_id": 7}}
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0
        finally:
            proc.kill()
            proc.wait(5)
            bus.close()
