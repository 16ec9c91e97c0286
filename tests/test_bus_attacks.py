"""Attacks on the RPC bus: slow peers, malformed requests, hijacked service names, crashing services.

Each attack runs against a real middleware over ipc, the slow peers in their own processes
(tests/attackers.py). The assertions are about behaviour, never speed: other clients still get
their answers within generous bounded deadlines, no honest service is dropped, and the
router's counters show what it dropped, refused and cut off.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import zmq

from aitrados.bus import (
    AsyncRPCClient,
    BadRequestError,
    RPCClient,
    Service,
    ServiceUnavailableError,
    ServiceWorker,
    TooManyRequestsError,
)
from aitrados.bus import protocol as P
from aitrados.bus.tokens import token_path
from aitrados.middleware import Middleware

from conftest import PATIENT_HEARTBEATS, PYTHON, bus_settings, child_env

pytestmark = pytest.mark.timeout(120)
ATTACKERS = str(Path(__file__).resolve().parent / "attackers.py")


class Calc(Service):
    name = "calc"

    def add(self, a: int, b: int) -> int:
        return a + b


def wait_until(cond: Callable[[], object], timeout: float = 20.0, what: str = "condition") -> object:
    """Poll *cond* until it is truthy; fail after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached within {timeout:g}s")


def spawn(*args: str, settings) -> subprocess.Popen:
    p = subprocess.Popen([PYTHON, ATTACKERS, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         env=child_env(settings), text=True)
    return p


def finish(p: subprocess.Popen) -> None:
    try:
        p.stdin.close()  # type: ignore[union-attr]
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(5)


def worker_ids(c: RPCClient, name: str) -> list[str]:
    return [w["id"] for w in (c.call("middleware", "services").get(name) or {"workers": []})["workers"]]


# ---------------------------------------------------------------- 1. slow peers
def test_a_client_that_never_reads_does_not_freeze_the_router(ipc_dir: str) -> None:
    s = bus_settings(ipc_dir, hwm=1000, peer_refusal_limit=200, peer_cutoff_seconds=60, heartbeat_interval=0.5)
    with Middleware(s) as mw:
        mw.serve(Calc())
        c = mw.rpc_client("ipc", timeout=10)
        wait_until(lambda: worker_ids(c, "calc"), what="calc registered")
        calc_ids = worker_ids(c, "calc")
        attacker = spawn("flood", mw.endpoints("ipc").rpc_frontend, "30000", settings=s)
        try:
            assert attacker.stdout.readline().startswith("sent")  # type: ignore[union-attr]
            # the attacker is connected, holds ~30k unread replies' worth of requests, and reads nothing
            for i in range(50):
                assert c.call("calc", "add", a=i, b=1) == i + 1
                assert c.call("middleware", "ping")["pong"] is True
            stats = wait_until(lambda: (st := c.call("middleware", "stats"))["rpc"]["peers"]["cut_offs"] >= 1 and st,
                               what="the flooding client cut off")
            peers = stats["rpc"]["peers"]  # type: ignore[index]
            assert peers["dropped"] >= 200 and peers["cut_off_now"]
            worst = max(peers["dropped_by_peer"].items(), key=lambda kv: kv[1])
            assert worst[0] in peers["cut_off_now"] and worst[1] >= 200
            assert stats["rpc"]["undeliverable"] >= 200  # type: ignore[index]
        finally:
            finish(attacker)
        # afterwards: the same worker still serves (it never missed a heartbeat), the router answers
        assert c.call("calc", "add", a=2, b=2) == 4
        assert worker_ids(c, "calc") == calc_ids
        assert c.call("middleware", "stats")["rpc"]["workers_lost"] == 0


def test_a_worker_that_never_reads_is_cut_off_and_others_keep_serving(ipc_dir: str) -> None:
    s = bus_settings(ipc_dir, hwm=500, peer_refusal_limit=100, peer_cutoff_seconds=60,
                     max_inflight_per_client=1_000_000, heartbeat_interval=0.5)
    with Middleware(s) as mw:
        mw.serve(Calc())
        c = mw.rpc_client("ipc", timeout=10)
        wait_until(lambda: worker_ids(c, "calc"), what="calc registered")
        calc_ids = worker_ids(c, "calc")
        deaf = spawn("deaf-worker", mw.endpoints("ipc").rpc_backend, "deaf", str(token_path(s.bus, "service")),
                     settings=s)
        ctx = zmq.Context.instance()
        raw = ctx.socket(zmq.DEALER)
        raw.linger = 0
        raw.connect(mw.endpoints("ipc").rpc_frontend)
        try:
            assert deaf.stdout.readline().strip() == "registered"  # type: ignore[union-attr]
            wait_until(lambda: worker_ids(c, "deaf"), what="the deaf worker registered")
            body = P.request_body("anything", {})
            replies: dict[str, int] = {}
            sent = 0
            deadline = time.monotonic() + 60
            while worker_ids(c, "deaf"):  # keep asking until the router gives up on it
                assert time.monotonic() < deadline, "the deaf worker was never cut off"
                for _ in range(1000):
                    raw.send_multipart([P.CLIENT_TAG, P.REQUEST, b"deaf", sent.to_bytes(8, "big"), body])
                    sent += 1
                while raw.poll(0):
                    f = raw.recv_multipart()
                    kind = P.decode(f[4])["type"] if f[1] == P.ERROR else "reply"
                    replies[kind] = replies.get(kind, 0) + 1
                assert c.call("calc", "add", a=sent, b=1) == sent + 1  # meanwhile calc answers
            end = time.monotonic() + 10
            while time.monotonic() < end and raw.poll(500):
                f = raw.recv_multipart()
                kind = P.decode(f[4])["type"] if f[1] == P.ERROR else "reply"
                replies[kind] = replies.get(kind, 0) + 1
            # requests it held were answered ServiceUnavailable; those no worker could take, Busy
            assert replies.get("ServiceUnavailable", 0) >= 1 and replies.get("Busy", 0) >= 1, replies
            stats = c.call("middleware", "stats")["rpc"]
            assert stats["peers"]["cut_offs"] >= 1 and stats["workers_lost"] == 1
            # its heartbeats (and any READY) are now discarded unread, and the name stays gone
            wait_until(lambda: c.call("middleware", "stats")["rpc"]["peers"]["discarded_from_cut_off"] > 0,
                       what="the cut-off worker's messages discarded")
            assert worker_ids(c, "deaf") == []
            assert worker_ids(c, "calc") == calc_ids and c.call("calc", "add", a=1, b=1) == 2
        finally:
            raw.close(0)
            finish(deaf)


def test_requests_in_flight_per_client_are_capped(ipc_dir: str) -> None:
    s = bus_settings(ipc_dir, max_inflight_per_client=3)

    class Gate(Service):
        name = "gate"
        open = False

        async def hold(self, i: int) -> int:
            end = time.monotonic() + 30
            while not Gate.open and time.monotonic() < end:
                await asyncio.sleep(0.01)
            return i

        def release(self) -> bool:
            Gate.open = True
            return True

    with Middleware(s) as mw:
        mw.serve(Gate())
        other = mw.rpc_client(timeout=10)
        wait_until(lambda: worker_ids(other, "gate"), what="gate registered")

        async def main() -> list[object]:
            c = AsyncRPCClient(mw.endpoints().rpc_frontend, context=mw.context, timeout=30)
            try:
                calls = [asyncio.ensure_future(c.call("gate", "hold", i=i)) for i in range(5)]
                refused = []
                for f in asyncio.as_completed(calls):  # the excess is answered at once, before any release
                    try:
                        await f
                    except TooManyRequestsError as exc:
                        refused.append(exc)
                        if len(refused) == 2:
                            break
                assert other.call("gate", "release") is True  # another client is not limited by this one
                return [len(refused), *await asyncio.gather(*calls, return_exceptions=True)]
            finally:
                c.close()

        n, *results = asyncio.run(asyncio.wait_for(main(), 60))
        assert n == 2
        assert sorted(r for r in results if isinstance(r, int)) == [0, 1, 2]
        assert sum(isinstance(r, TooManyRequestsError) for r in results) == 2
        assert other.call("middleware", "stats")["rpc"]["too_many_requests"] == 2


# ---------------------------------------------------------------- 2. malformed requests
BAD_BODIES = [
    P.encode({"method": [1]}),
    P.encode({"method": {"a": 1}}),
    P.encode({"method": None}),
    P.encode({"method": "add", "params": [1, 2]}),
    P.encode({"method": "add", "params": {1: 2}}),
    P.encode({"method": "add", "params": {"a": 1, "c": 2}}),
    P.encode([1, 2, 3]),
    P.encode("add"),
    b"\xc1",
    b"",
]


@pytest.fixture
def patient_mw(ipc_dir: str) -> Iterator[Middleware]:
    """A middleware whose heartbeats survive a starved thread (the check below: no worker lost)."""
    with Middleware(bus_settings(ipc_dir, **PATIENT_HEARTBEATS)) as m:
        yield m


def test_any_malformed_request_gets_bad_request_and_the_worker_keeps_serving(patient_mw: Middleware) -> None:
    mw = patient_mw
    mw.serve(Calc())
    c = mw.rpc_client(timeout=10)
    wait_until(lambda: worker_ids(c, "calc"), what="calc registered")
    ids = worker_ids(c, "calc")
    for body in BAD_BODIES:
        with pytest.raises(BadRequestError):
            c.call_raw(b"calc", body)
        assert c.call("calc", "add", a=1, b=2) == 3
    # a wrong type inside the method is the method's own error, also answered
    with pytest.raises(Exception, match="TypeError"):
        c.call("calc", "add", a="x", b=None)
    assert worker_ids(c, "calc") == ids  # the same worker, never re-registered
    assert c.call("middleware", "stats")["rpc"]["workers_lost"] == 0


class Crash(BaseException):
    """Escapes every ``except Exception``: stands for a fault in the worker's own loop."""


class CrashingWorker(ServiceWorker):
    """A worker whose loop dies on a request for method ``crash`` (fault injection)."""

    def _handle(self, frames: list[bytes]) -> None:
        if len(frames) == 5 and b"crash" in frames[4]:
            raise Crash("injected fault in the worker loop")
        super()._handle(frames)


def test_a_crashed_service_is_restarted_and_given_up_on_with_a_failure(mw: Middleware) -> None:
    w = CrashingWorker(Calc(), mw.endpoints().rpc_backend, bus=mw.bus, context=mw.context, max_restarts=2,
                       **mw.worker_credentials()).start()
    mw.workers.append(w)
    c = mw.rpc_client(timeout=10)
    wait_until(lambda: worker_ids(c, "calc"), what="calc registered")
    with pytest.raises(ServiceUnavailableError):
        c.call("calc", "crash")
    info = wait_until(lambda: [x for x in (c.call("middleware", "services").get("calc") or {"workers": []})["workers"]
                               if x.get("restarts") == 1], what="calc back after a restart")
    assert info and c.call("calc", "add", a=3, b=4) == 7 and w.restarts == 1 and w.failure is None
    for _ in range(2):  # the third crash within a minute exceeds max_restarts=2
        wait_until(lambda: worker_ids(c, "calc"), what="calc registered again")
        with pytest.raises(ServiceUnavailableError):
            c.call("calc", "crash")
    wait_until(lambda: w.failure is not None, what="the worker gave up")
    assert "crashed 3 times" in str(w.failure) and "injected fault" in str(w.failure)
    assert mw.failure is w.failure
    assert mw.wait(install_signals=False) == 1  # `aitrados run` exits non-zero and says why


# ---------------------------------------------------------------- 3. hijack
def ready(sock: zmq.Socket, name: bytes, info: dict) -> list[bytes] | None:
    sock.send_multipart([P.WORKER_TAG, P.READY, name, P.encode(info)])
    return sock.recv_multipart() if sock.poll(10_000) else None


def test_a_ready_without_the_service_token_is_refused(mw: Middleware) -> None:
    mw.serve(Calc())
    c = mw.rpc_client(timeout=10)
    wait_until(lambda: worker_ids(c, "calc"), what="calc registered")
    ids = worker_ids(c, "calc")
    ctx = zmq.Context.instance()
    socks = []
    try:
        for info in ({"pid": 1}, {"token": "guess"}, {"token": 12345}, {"token": mw.tokens["operator"]}):
            s = ctx.socket(zmq.DEALER)
            s.linger = 0
            s.connect(mw.endpoints("ipc").rpc_backend)
            socks.append(s)
            answer = ready(s, b"calc", info)
            assert answer is not None and answer[:2] == [P.WORKER_TAG, P.ERROR], answer
            assert P.decode(answer[2])["type"] == "Unauthorized"
        for name in ("\u202ecalc", "ca\x00lc", "calc\u200b", "middleware", "two words"):
            s = ctx.socket(zmq.DEALER)
            s.linger = 0
            s.connect(mw.endpoints("ipc").rpc_backend)
            socks.append(s)
            answer = ready(s, name.encode(), {"token": mw.tokens["service"]})
            assert answer is not None and P.decode(answer[2])["type"] == "BadRequest", name
        stats = c.call("middleware", "stats")["rpc"]
        assert stats["refused_ready"] == 9
        assert worker_ids(c, "calc") == ids  # every call still reaches the real worker
        for i in range(10):
            assert c.call("calc", "add", a=i, b=i) == 2 * i
    finally:
        for s in socks:
            s.close(0)


def test_router_measured_fields_cannot_be_forged(mw: Middleware) -> None:
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.DEALER)
    s.linger = 0
    s.connect(mw.endpoints("ipc").rpc_backend)
    try:
        s.send_multipart([P.WORKER_TAG, P.READY, b"liar", P.encode(
            {"token": mw.tokens["service"], "id": "forged", "served": 10**9, "inflight": -5, "pid": "not a pid",
             "host": "h" * 1000, "registered_for": 1e9})])
        c = mw.rpc_client(timeout=10)
        w = wait_until(lambda: (c.call("middleware", "services").get("liar") or {"workers": [None]})["workers"][0],
                       what="liar registered")
        assert w["id"] != "forged" and len(w["id"]) == 10  # the router's own id of the connection (hex)
        assert w["served"] == 0 and w["inflight"] == 0 and w["registered_for"] < 1e6
        assert "pid" not in w and len(w["host"]) == 255
        assert "token" not in w
    finally:
        s.close(0)


# ---------------------------------------------------------------- 8. retries of idempotent calls
def test_an_idempotent_call_is_retried_on_service_unavailable(mw: Middleware) -> None:
    class Twice(Service):
        name = "twice"

        def __init__(self, hang: bool) -> None:
            self.hang = hang

        async def step(self) -> str:
            if self.hang:  # the first worker is stopped while it holds the request
                await asyncio.sleep(60)
            return "second"

    first = mw.serve(Twice(hang=True))
    c = mw.rpc_client(timeout=10)
    wait_until(lambda: len(worker_ids(c, "twice")) == 1, what="the first worker registered")
    result: dict[str, object] = {}

    def call() -> None:
        try:
            result["value"] = c.call("twice", "step", idempotent=True, timeout=30)
        except BaseException as exc:  # noqa: BLE001
            result["error"] = exc

    t = threading.Thread(target=call)
    t.start()
    other = mw.rpc_client(timeout=10)
    wait_until(lambda: any(w["inflight"] for w in other.call("middleware", "services")["twice"]["workers"]),
               what="the request in flight at the first worker")
    mw.serve(Twice(hang=False))
    wait_until(lambda: len(worker_ids(other, "twice")) == 2, what="the second worker registered")
    first.stop()  # says goodbye: the router answers the held request ServiceUnavailable
    t.join(30)
    assert not t.is_alive() and result == {"value": "second"}, result
    # without idempotent=True the error reaches the caller at once
    mw.workers[-1].stop()
    wait_until(lambda: not worker_ids(other, "twice"), what="the second worker gone")
    hanging = mw.serve(Twice(hang=True))
    wait_until(lambda: worker_ids(other, "twice"), what="a hanging worker registered")

    def stop_when_held() -> None:
        wait_until(lambda: any(w["inflight"] for w in other.call("middleware", "services")["twice"]["workers"]),
                   what="the request held by the hanging worker")
        hanging.stop()

    threading.Thread(target=stop_when_held, daemon=True).start()
    with pytest.raises(ServiceUnavailableError):
        c.call("twice", "step", timeout=30)


# ---------------------------------------------------------------- CURVE across network namespaces
def _ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)


@pytest.fixture
def netns() -> Iterator[tuple[str, str]]:
    """A network namespace joined to this one by a veth pair: yields (namespace, host-side address)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("creating a network namespace needs root and iproute2")
    tag = f"{os.getpid() % 100000}"
    ns, host_if, ns_if = f"atns{tag}", f"ath{tag}", f"atn{tag}"
    octet = os.getpid() % 200 + 20
    host_ip, ns_ip = f"10.213.{octet}.1", f"10.213.{octet}.2"
    steps = [("netns", "add", ns), ("link", "add", host_if, "type", "veth", "peer", "name", ns_if),
             ("link", "set", ns_if, "netns", ns), ("addr", "add", f"{host_ip}/30", "dev", host_if),
             ("link", "set", host_if, "up"), ("netns", "exec", ns, "ip", "addr", "add", f"{ns_ip}/30", "dev", ns_if),
             ("netns", "exec", ns, "ip", "link", "set", ns_if, "up"), ("netns", "exec", ns, "ip", "link", "set", "lo", "up")]
    try:
        for step in steps:
            r = _ip(*step)
            if r.returncode != 0:
                pytest.skip(f"cannot build the test network (ip {' '.join(step)}: {r.stderr.strip()})")
        yield ns, host_ip
    finally:
        _ip("link", "del", host_if)
        _ip("netns", "del", ns)


@pytest.mark.timeout(90)
def test_a_worker_in_another_network_namespace_joins_over_curve_and_a_wrong_key_is_refused(
        ipc_dir: str, tmp_path: Path, netns: tuple[str, str]) -> None:
    import zmq.auth

    from aitrados.bus.security import make_keys

    ns, host_ip = netns
    keys = make_keys(tmp_path / "keys")
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    shutil.copy(keys["client_public"], allowed / "client.key")
    (tmp_path / "intruder").mkdir()
    _, intruder_secret = zmq.auth.create_certificates(tmp_path / "intruder", "intruder")
    s = bus_settings(ipc_dir, host=host_ip, curve_secret_key_file=str(keys["server_secret"]),
                     curve_authorized_dir=str(allowed))
    with Middleware(s) as mw:
        backend = mw.endpoints("tcp").rpc_backend
        assert backend.startswith(f"tcp://{host_ip}:")
        args = [backend, str(token_path(s.bus, "service")), str(keys["server_public"])]
        cmd = ["ip", "netns", "exec", ns, PYTHON, ATTACKERS]
        good = subprocess.Popen([*cmd, "curve-worker", *args, str(keys["client_secret"])], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, env=child_env(s))
        bad = subprocess.Popen([*cmd, "curve-intruder", *args, str(intruder_secret)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True, env=child_env(s))
        try:
            c = mw.rpc_client(timeout=10)
            wait_until(lambda: worker_ids(c, "nsworker"), 30, what="the namespaced worker registered")
            where = c.call("nsworker", "where")
            assert where["pid"] == good.pid and where["netns"] != os.readlink("/proc/self/ns/net")
            assert bad.stdout.readline().strip() == "refused"  # type: ignore[union-attr]
            assert len(worker_ids(c, "nsworker")) == 1  # the intruder never registered
        finally:
            finish(good)
            finish(bad)
