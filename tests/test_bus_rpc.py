"""RPC router and clients: real sockets, real processes (router / service / client apart)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from aitrados.bus import (
    AsyncRPCClient,
    BadRequestError,
    MethodNotFoundError,
    RemoteError,
    RPCClient,
    RPCTimeoutError,
    Service,
    ServiceUnavailableError,
    ServiceWorker,
    UnknownServiceError,
)
from aitrados.bus.probe import prove
from aitrados.middleware import Middleware

from conftest import PYTHON, child_env, wait_for_service

PEERS = str(Path(__file__).with_name("peers.py"))
pytestmark = pytest.mark.timeout(60)


class Calc(Service):
    name = "calc"

    def add(self, a: int, b: int) -> int:
        return a + b

    async def slow(self, seconds: float, tag: str) -> str:
        await asyncio.sleep(seconds)
        return tag

    def boom(self) -> None:
        raise KeyError("no such thing")


def spawn_service(name: str, backend: str, settings) -> subprocess.Popen:
    p = subprocess.Popen([PYTHON, PEERS, "service", name, backend], stdout=subprocess.PIPE,
                         env=child_env(settings), text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    return p


def test_call_inproc_and_errors(mw: Middleware) -> None:
    mw.serve(Calc())
    c = mw.rpc_client(timeout=5)
    wait_for_service(c, "calc")
    assert c.call("calc", "add", a=2, b=3) == 5
    with pytest.raises(RemoteError) as ei:
        c.call("calc", "boom")
    assert ei.value.type == "KeyError" and "no such thing" in ei.value.message and "Traceback" in ei.value.remote_traceback
    with pytest.raises(MethodNotFoundError, match="add, boom, slow"):
        c.call("calc", "nope")
    with pytest.raises(UnknownServiceError) as ue:
        c.call("nosuch", "x")
    assert "'nosuch'" in str(ue.value) and "calc" in str(ue.value)
    with pytest.raises(BadRequestError, match="missing a required argument: 'b'"):
        c.call("calc", "add", a=1)  # missing parameter: the caller's mistake, named with the signature


@pytest.mark.parametrize("transport", ["ipc", "tcp"])
def test_three_processes(settings, transport: str) -> None:
    """Routers in one process, a service in a second, the client in this (third) one."""
    bus_cfg = settings.bus.model_dump()
    router = subprocess.Popen([PYTHON, PEERS, "router", json.dumps(bus_cfg)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=child_env(settings))
    svc = None
    try:
        assert router.stdout is not None
        eps = json.loads(router.stdout.readline())[transport]
        svc = spawn_service("echo", eps["rpc_backend"], settings)
        with RPCClient(eps["rpc_frontend"], timeout=5) as c:
            wait_for_service(c, "echo")
            assert c.call("echo", "echo", value={"a": [1, 2.5, "x"]}) == {"a": [1, 2.5, "x"]}
            assert c.call("echo", "whoami") == svc.pid
            with pytest.raises(RemoteError, match="ValueError: bad"):
                c.call("echo", "fail", message="bad")
    finally:
        if svc:
            svc.kill()
            svc.wait()
        router.stdin.close()  # type: ignore[union-attr]
        router.wait(10)


def test_worker_killed_mid_request_gets_error_not_hang(mw: Middleware, settings) -> None:
    svc = spawn_service("victim", mw.endpoints("ipc").rpc_backend, settings)
    c = mw.rpc_client(timeout=20)
    wait_for_service(c, "victim")
    result: dict[str, BaseException | object] = {}

    def call() -> None:
        try:
            result["value"] = c.call("victim", "sleep", seconds=30)
        except BaseException as exc:  # noqa: BLE001
            result["error"] = exc

    t = threading.Thread(target=call)
    t.start()
    watcher = mw.rpc_client(timeout=10)  # the call's client is busy in its thread
    deadline = time.monotonic() + 20
    while not watcher.call("middleware", "services")["victim"]["workers"][0]["inflight"]:
        assert time.monotonic() < deadline, "the call never reached the worker"
        time.sleep(0.02)
    svc.kill()
    svc.wait()
    t.join(10)
    assert not t.is_alive(), "the client hung after its worker died"
    assert isinstance(result.get("error"), ServiceUnavailableError)
    assert "lost" in str(result["error"])


def test_service_restarted_clients_recover(mw: Middleware, settings) -> None:
    backend = mw.endpoints("ipc").rpc_backend
    c = mw.rpc_client(timeout=5)
    first = spawn_service("phoenix", backend, settings)
    wait_for_service(c, "phoenix")
    assert c.call("phoenix", "whoami") == first.pid
    first.kill()
    first.wait()
    # the router notices the silence, then the name is unknown until the service is back
    deadline = time.monotonic() + 5
    while "phoenix" in c.call("middleware", "services") and time.monotonic() < deadline:
        time.sleep(0.05)
    with pytest.raises(UnknownServiceError):
        c.call("phoenix", "whoami")
    second = spawn_service("phoenix", backend, settings)
    try:
        wait_for_service(c, "phoenix")
        assert c.call("phoenix", "whoami") == second.pid
    finally:
        second.kill()
        second.wait()


def test_requests_spread_over_workers(mw: Middleware, settings) -> None:
    backend = mw.endpoints("ipc").rpc_backend
    procs = [spawn_service("pool", backend, settings) for _ in range(2)]
    try:
        c = mw.rpc_client(timeout=5)
        wait_for_service(c, "pool", workers=2)

        async def many() -> set[int]:
            ac = AsyncRPCClient(mw.endpoints("ipc").rpc_frontend, timeout=5)
            # slow calls in flight at once: the least-busy worker gets each next one
            await asyncio.gather(*[ac.call("pool", "sleep", seconds=0.2) for _ in range(4)])
            pids = await asyncio.gather(*[ac.call("pool", "whoami") for _ in range(20)])
            ac.close()
            return set(pids)

        assert asyncio.run(many()) == {p.pid for p in procs}
        served = [w["served"] for w in c.call("middleware", "services")["pool"]["workers"]]
        assert len(served) == 2 and all(s >= 2 for s in served)
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_slow_service_does_not_block_others_and_replies_out_of_order(mw: Middleware) -> None:
    mw.serve(Calc())
    c = mw.rpc_client()
    wait_for_service(c, "calc")

    async def run() -> tuple[list[str], float, list[str]]:
        ac = AsyncRPCClient(mw.endpoints().rpc_frontend, context=mw.context, timeout=5)
        order: list[str] = []

        async def tagged(sec: float, tag: str) -> str:
            r = await ac.call("calc", "slow", seconds=sec, tag=tag)
            order.append(r)
            return r

        slow = asyncio.ensure_future(tagged(1.0, "slow"))
        await asyncio.sleep(0.05)
        fast_tasks = [tagged(0.05, f"fast{i}") for i in range(5)]
        fast = await asyncio.gather(*fast_tasks)
        ping = await ac.call("middleware", "ping")
        assert not slow.done()  # the slow call is still running while the others finished
        await slow
        ac.close()
        return fast, ping["pong"], order

    fast, pong, order = asyncio.run(run())
    assert fast == [f"fast{i}" for i in range(5)] and pong is True
    assert order[-1] == "slow"  # replies came back out of request order


def test_a_flood_beyond_one_wake_up_is_served_without_waiting_for_a_heartbeat(ipc_dir: str) -> None:
    """The worker handles at most a bounded number of messages per wake-up of its socket; the rest must be
    picked up at once (the socket's descriptor does not signal them again), not at the next heartbeat."""
    from conftest import bus_settings

    # heartbeats far apart: a worker that went deaf would only be woken after 60 s, past the calls' timeout
    m = Middleware(bus_settings(ipc_dir, heartbeat_interval=60.0, heartbeat_liveness=3)).start()
    try:
        m.serve(Calc())
        wait_for_service(m.rpc_client(timeout=10), "calc")

        async def flood() -> list[int]:
            ac = AsyncRPCClient(m.endpoints().rpc_frontend, context=m.context, timeout=30)
            sem = asyncio.Semaphore(500)  # below bus.max_inflight_per_client

            async def one(i: int) -> int:
                async with sem:
                    return await ac.call("calc", "add", a=i, b=1)

            try:
                return await asyncio.gather(*[one(i) for i in range(3000)])
            finally:
                ac.close()

        assert asyncio.run(flood()) == [i + 1 for i in range(3000)]
    finally:
        m.stop()


def test_timed_out_client_stays_usable(mw: Middleware) -> None:
    mw.serve(Calc())
    c = mw.rpc_client()
    wait_for_service(c, "calc")
    with pytest.raises(RPCTimeoutError):
        c.call("calc", "slow", seconds=0.5, tag="late", timeout=0.1)
    # the late reply arrives while we wait for this one and is dropped
    assert c.call("calc", "slow", seconds=0.6, tag="next", timeout=5) == "next"
    assert c.call("calc", "add", a=1, b=1) == 2


def test_a_shorter_timeout_after_a_longer_one_is_kept(mw: Middleware) -> None:
    """The client sets its socket's receive timeout only when a call needs another one: a short
    timeout after a long one must lower it (a stale 5 s would let the 3 s reply through)."""
    mw.serve(Calc())
    c = mw.rpc_client()
    wait_for_service(c, "calc")
    assert c.call("calc", "slow", seconds=0.01, tag="long", timeout=5) == "long"
    with pytest.raises(RPCTimeoutError):
        c.call("calc", "slow", seconds=3, tag="short", timeout=0.2)
    assert c.call("calc", "add", a=2, b=2, timeout=10) == 4


def test_no_router_times_out_clearly(ipc_dir: str) -> None:
    c = RPCClient(f"ipc://{ipc_dir}/nothing-here.sock", timeout=0.3)
    with pytest.raises(RPCTimeoutError, match="cannot reach the RPC router"):
        c.call("middleware", "ping")
    c.close()


def test_worker_reregisters_after_router_restart(settings) -> None:
    m1 = Middleware(settings).start()
    backend = m1.endpoints("ipc").rpc_backend
    w = ServiceWorker(Calc(), backend, bus=settings.bus).start()
    try:
        c = RPCClient(m1.endpoints("ipc").rpc_frontend, timeout=5)
        wait_for_service(c, "calc")
        m1.stop()
        m2 = Middleware(settings).start()
        try:
            c2 = RPCClient(m2.endpoints("ipc").rpc_frontend, timeout=5)
            wait_for_service(c2, "calc")
            assert c2.call("calc", "add", a=20, b=22) == 42
        finally:
            m2.stop()
    finally:
        w.stop()


def test_middleware_service(mw: Middleware) -> None:
    c = mw.rpc_client()
    ping = c.call("middleware", "ping")
    assert ping["pong"] is True and ping["protocol"] == 1
    stats = c.call("middleware", "stats")
    assert stats["rpc"]["requests"] >= 1 and "malformed" in stats["rpc"]
    pub = mw.publisher()
    sub = mw.subscriber(["x."])
    assert prove(sub, pub.publish, mw.endpoints().subscribe, "test") == []
    for i in range(3):
        pub.publish("x.one", i)
    assert sub.recv(timeout=10) is not None
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        topics = c.call("middleware", "topics")
        if topics.get("x.one", {}).get("count") == 3:
            break
        time.sleep(0.1)
    assert topics["x.one"]["count"] == 3 and topics["x.one"]["publishers"] == 1


def test_the_workers_keyword_check_agrees_with_signature_bind() -> None:
    """The set check that spares ``Signature.bind`` on the hot path accepts exactly the calls bind accepts."""
    import inspect
    import itertools

    from aitrados.bus.service import _keywords

    def f1(a, b, c=1): ...
    def f2(*, a, b=2): ...
    def f3(a, /, b): ...
    def f4(a, **kw): ...
    def f5(*args): ...
    def f6(): ...

    names = ["a", "b", "c", "d"]
    for fn in (f1, f2, f3, f4, f5, f6):
        sig = inspect.signature(fn)
        kw = _keywords(sig)
        for n in range(len(names) + 1):
            for combo in itertools.combinations(names, n):
                params = dict.fromkeys(combo, 0)
                try:
                    sig.bind(**params)
                    binds = True
                except TypeError:
                    binds = False
                if kw is not None:
                    assert (params.keys() >= kw[0] and params.keys() <= kw[1]) == binds, (fn.__name__, combo)
                else:
                    assert fn in (f3, f4, f5)  # positional-only or variadic: always left to bind


def test_an_unexpected_keyword_is_a_bad_request(mw: Middleware) -> None:
    mw.serve(Calc())
    c = mw.rpc_client(timeout=10)
    wait_for_service(c, "calc")
    with pytest.raises(BadRequestError, match="unexpected keyword argument 'z'"):
        c.call("calc", "add", a=1, b=2, z=3)
    assert c.call("calc", "add", a=1, b=2) == 3
