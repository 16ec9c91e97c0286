"""The Node.js conformance client (examples/clients/node/, written from docs/protocol.md alone)
against a real middleware: RPC, a chart window, pub/sub with gap detection, publishing to
`aitrados tail`, a Node service worker called from `aitrados call` and killed mid-call, CURVE."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from aitrados.bus import protocol as P
from aitrados.bus.errors import RemoteError as RPCError
from aitrados.bus.security import make_keys
from aitrados.middleware import Middleware
from aitrados.runtime import Runtime

from conftest import AITRADOS, bus_settings, child_env

pytestmark = [pytest.mark.timeout(300),
              pytest.mark.skipif(not (shutil.which("node") and shutil.which("npm")),
                                 reason="node and npm are needed to run the Node.js conformance client")]

NODE_DIR = Path(__file__).resolve().parent.parent / "examples" / "clients" / "node"
SYM = "CRYPTO:GLOBAL:BTCUSD"


@pytest.fixture(scope="module")
def node_client() -> list[str]:
    """Install the client's npm packages from its lock file (once per run); the command to run it."""
    stamp = NODE_DIR / "node_modules" / ".package-lock.json"
    lock = NODE_DIR / "package-lock.json"
    if not stamp.exists() or stamp.stat().st_mtime < lock.stat().st_mtime:
        r = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, capture_output=True, text=True,
                           timeout=240)
        assert r.returncode == 0, f"npm ci failed:\n{r.stdout}\n{r.stderr}"
    return ["node", str(NODE_DIR / "conformance.mjs")]


class Node:
    """A running conformance client: JSON lines from stdout, one at a time, with a deadline."""

    def __init__(self, cmd: list[str]) -> None:
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self._lines: list[str] = []
        self._cv = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cv:
                self._lines.append(line)
                self._cv.notify_all()
        with self._cv:
            self._lines.append("")  # end of output
            self._cv.notify_all()

    def expect(self, check: str, timeout: float = 60.0) -> dict[str, Any]:
        """The next line, which must be the JSON of *check*."""
        with self._cv:
            assert self._cv.wait_for(lambda: bool(self._lines), timeout), f"node printed nothing for {check!r}"
            line = self._lines.pop(0)
        if not line:
            self.proc.wait(10)
            raise AssertionError(f"node exited ({self.proc.returncode}) before {check!r}: {self.proc.stderr.read()}")  # type: ignore[union-attr]
        got = json.loads(line)
        assert got["check"] == check, got
        return got

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def runtime(ipc_dir: str, tmp_path: Path) -> Iterator[Runtime]:
    s = bus_settings(ipc_dir)
    md = s.marketdata
    md.provider = "replay"
    md.replay_symbols = [SYM]
    md.replay_days = 0.1
    md.replay_history_days = 0.1
    s.trading.report_dir = str(tmp_path / "report")
    rt = Runtime(s, plugins=[]).start()
    yield rt
    rt.stop()


def raw_publish(pub: zmq.Socket, pid: bytes, seq: int, body: Any, topic: str = "conf.test") -> None:
    pub.send_multipart([topic.encode(), P.META.pack(P.META_VERSION, pid, seq), P.encode(body)])


def test_node_client_rpc_chart_pubsub_and_tail(node_client: list[str], runtime: Runtime) -> None:
    mw = runtime.mw
    ep = mw.endpoints("ipc")
    c = mw.rpc_client(timeout=10)
    # keep the replay clock still: a subscription would start it, and the window would then gain bars
    # between Node's read and ours (a race, not a check; CI's loaded run lost it)
    runtime.replay.server.autostart = "manual"
    assert c.call("chart", "add", full_symbol=SYM, interval="15M", size=5)["created"]
    node = Node([*node_client, "client", "--rpc", ep.rpc_frontend, "--publish", ep.publish,
                 "--subscribe", ep.subscribe, "--symbol", SYM, "--interval", "15M"])
    try:
        ping = node.expect("ping")["result"]
        assert ping["pong"] is True and ping["protocol"] == P.PROTOCOL_VERSION
        assert ping["heartbeat_interval"] == mw.bus.heartbeat_interval
        assert node.expect("ping_without_params")["pong"] is True
        names = node.expect("services")["names"]
        assert "chart" in names and "middleware" not in names  # the router's own service is not listed
        errors = node.expect("errors")
        assert errors == {"check": "errors", "unknown_service": "UnknownService", "empty_service": "UnknownService",
                          "unknown_method": "MethodNotFound"}
        bars = node.expect("chart")["bars"]
        ours = c.call("chart", "window", full_symbol=SYM, interval="15M", size=5)
        assert [b["close"] for b in bars] == [b["close"] for b in ours] and len(bars) >= 1
        assert all(b["is_date"] for b in bars)  # timestamps arrive as the msgpack timestamp extension
        assert [dt.datetime.fromisoformat(b["close_datetime"].replace("Z", "+00:00")) for b in bars] == \
               [b["close_datetime"] for b in ours]

        node.expect("subscribed")
        ctx = zmq.Context.instance()
        pub = ctx.socket(zmq.PUB)
        pub.linger = 1000
        pub.connect(ep.publish)
        try:
            # the router subscribes to everything: probe until our connection is up, on a topic Node ignores
            deadline = time.monotonic() + 20
            while "probe.py" not in c.call("middleware", "topics"):
                assert time.monotonic() < deadline, "the router never saw the Python publisher"
                raw_publish(pub, b"P" * 8, 1, {}, topic="probe.py")
                time.sleep(0.05)
            pid = os.urandom(8)
            when = dt.datetime(2024, 1, 2, 3, 4, 5, 123000, tzinfo=dt.timezone.utc)
            raw_publish(pub, pid, 1, {"i": 1, "big": 2**60 + 1, "when": when, "raw": b"\x00\xff", "text": "héllo"})
            raw_publish(pub, pid, 2, {"i": 2})
            raw_publish(pub, pid, 4, {"i": 4})  # 3 is lost
            raw_publish(pub, pid, 4, {"i": 4})  # a duplicate
            raw_publish(pub, pid, 5, {"end": True})
        finally:
            pub.close()
        gaps = node.expect("gaps")
        assert gaps["seqs"] == ["1", "2", "4", "4", "5"]
        assert gaps["stats"] == {"received": 5, "gaps": 1, "missed": 1, "out_of_order": 1, "malformed": 0}
        first = gaps["first"]
        assert first["big"] == str(2**60 + 1) and first["text"] == "héllo"  # ints above 2^53 stay exact
        assert first["when"] == "2024-01-02T03:04:05.123Z" and first["raw"]["data"] == [0, 255]  # bin, not str

        node.expect("ready_to_publish")
        tail = subprocess.Popen([*AITRADOS, "tail", "node.", "--count", "5", "--seconds", "60"],
                                env=child_env(runtime.settings), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 30
            while "node." not in c.call("middleware", "stats")["pubsub"]["subscriptions"]:
                assert tail.poll() is None and time.monotonic() < deadline, "aitrados tail did not subscribe"
                time.sleep(0.05)
            node.send("publish")
            node.expect("published")
            out, err = tail.communicate(timeout=60)
        finally:
            if tail.poll() is None:
                tail.kill()
        lines = out.splitlines()
        assert len(lines) == 5, (out, err)
        assert [ln.split(" ", 2)[:2] for ln in lines] == [["node.hello", f"#{i}"] for i in range(1, 6)]
        assert json.loads(lines[0].split(" ", 2)[2]) == {"i": 1, "from": "node", "big": 2**60 + 1}
        assert "missed" not in err
        t = node.expect("topics")["node_hello"]
        assert t["count"] == 5 and t["publishers"] == 1
        assert node.proc.wait(30) == 0
    finally:
        node.stop()


def test_node_worker_called_from_python_and_killed(node_client: list[str], mw: Middleware, settings) -> None:
    ep = mw.endpoints("ipc")
    from aitrados.bus.tokens import token_path

    node = Node([*node_client, "worker", "--rpc", ep.rpc_frontend, "--backend", ep.rpc_backend, "--name", "nodecalc",
                 "--token-file", str(token_path(settings.bus, "service"))])
    try:
        ready = node.expect("worker_ready")
        assert ready["heartbeat_interval"] == settings.bus.heartbeat_interval
        r = subprocess.run([*AITRADOS, "call", "nodecalc", "add", "a=2", "b=40"], env=child_env(settings),
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and json.loads(r.stdout) == 42, r.stderr
        c = mw.rpc_client(timeout=10)
        assert c.call("nodecalc", "echo", x=[1, "two"], y={"z": None}) == {"x": [1, "two"], "y": {"z": None}}
        assert c.call("nodecalc", "big") == 2**60 + 1
        assert c.call("nodecalc", "when") == dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
        with pytest.raises(RPCError) as e:
            c.call("nodecalc", "fail", why="bad input")
        assert e.value.type == "ValueError" and "bad input" in str(e.value)
        with pytest.raises(RPCError) as e:
            c.call("nodecalc", "nope")
        assert e.value.type == "MethodNotFound" and "add" in str(e.value)
        info = c.call("middleware", "services")["nodecalc"]["workers"][0]
        assert info["pid"] == node.proc.pid and "add" in info["methods"]

        # a call in flight when the worker dies gets a clear error, not a timeout
        result: dict[str, Any] = {}

        def slow_call() -> None:
            try:
                result["value"] = mw.rpc_client(timeout=60).call("nodecalc", "sleep", ms=60_000)
            except Exception as exc:
                result["error"] = exc

        t = threading.Thread(target=slow_call)
        t.start()
        deadline = time.monotonic() + 20
        while not c.call("middleware", "services")["nodecalc"]["workers"][0]["inflight"]:
            assert time.monotonic() < deadline, "the call never reached the Node worker"
            time.sleep(0.05)
        node.proc.send_signal(signal.SIGKILL)
        t.join(30)
        assert not t.is_alive()
        err = result.get("error")
        assert isinstance(err, RPCError) and err.type == "ServiceUnavailable", result
        assert "nodecalc" in str(err)
    finally:
        node.stop()


def test_node_client_over_curve(node_client: list[str], ipc_dir: str, tmp_path: Path) -> None:
    keys = make_keys(tmp_path / "keys")
    s = bus_settings(ipc_dir, curve_secret_key_file=str(keys["server_secret"]))
    with Middleware(s) as mw:
        ep = mw.endpoints("tcp")
        args = ["--rpc", ep.rpc_frontend, "--publish", ep.publish, "--subscribe", ep.subscribe,
                "--server-key", str(keys["server_public"])]
        node = Node([*node_client, "curve", *args, "--client-secret", str(keys["client_secret"])])
        try:
            assert node.expect("curve") == {"check": "curve", "pong": True, "roundtrip": "curve.echo"}
            assert node.proc.wait(30) == 0
        finally:
            node.stop()
        # a key pair the middleware does not know gets nowhere (the allow-list)
        stranger = make_keys(tmp_path / "stranger")
        node = Node([*node_client, "curve", *args, "--client-secret", str(stranger["client_secret"])])
        try:
            with pytest.raises(AssertionError, match="exited|printed nothing"):
                node.expect("curve", timeout=5)
        finally:
            node.stop()
