"""The RPC router: a Majordomo-style broker between clients and named services.

Clients (DEALER) connect to the frontend ROUTER; service workers (DEALER) connect to the
backend ROUTER and announce themselves with READY. The router forwards each request to the
least-busy live worker of the named service and the reply back to the client. Heartbeats
run both ways; a worker that stays silent for ``heartbeat_interval * heartbeat_liveness``
seconds is dropped and every request it held is answered with a ``ServiceUnavailable``
error at once. Malformed frames are dropped and counted; the router never dies on input.

The router answers the built-in ``middleware`` service itself (ping, services, topics,
stats), so it works with no worker at all.

Hot path: one thread, non-blocking drains after each poll wake-up, frames sent with
explicit SNDMORE; the router never decodes request bodies.
"""

from __future__ import annotations

import os
import socket as _socket
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import zmq
from loguru import logger

from .. import __version__
from ..settings import BusSettings
from . import protocol as P

_MORE = int(zmq.SNDMORE)
_NOBLOCK = int(zmq.NOBLOCK)
_DRAIN_LIMIT = 2000


class _Worker:
    """One registered worker: its routing id, service, liveness and in-flight requests."""

    __slots__ = ("wid", "service", "last_seen", "inflight", "info", "served")

    def __init__(self, wid: bytes, service: bytes, info: dict[str, Any], now: float) -> None:
        self.wid = wid
        self.service = service
        self.last_seen = now
        self.inflight: set[tuple[bytes, bytes]] = set()
        self.info = info
        self.served = 0


class _Service:
    """A service name and the workers serving it."""

    __slots__ = ("name", "workers", "requests", "rr")

    def __init__(self, name: bytes) -> None:
        self.name = name
        self.workers: list[_Worker] = []
        self.requests = 0
        self.rr = 0

    def pick(self) -> _Worker:
        """The worker with the fewest requests in flight (round robin among equals)."""
        ws = self.workers
        if len(ws) == 1:
            return ws[0]
        self.rr += 1
        n = len(ws)
        best = ws[self.rr % n]
        for i in range(1, n):
            w = ws[(self.rr + i) % n]
            if len(w.inflight) < len(best.inflight):
                best = w
        return best


class RPCRouter:
    """The broker. ``bind`` in the caller's thread (errors raise there), then ``start``.

    :param ctx: the ZeroMQ context (shared with in-process peers for inproc)
    :param bus: bus settings (heartbeats, limits, high-water marks)
    :param frontend: addresses the client-facing ROUTER binds
    :param backend: addresses the worker-facing ROUTER binds
    :param topics: optional callable returning pub/sub topic statistics for ``middleware.topics``
    """

    def __init__(self, ctx: zmq.Context, bus: BusSettings, frontend: list[str], backend: list[str],
                 topics: Callable[[], dict[str, Any]] | None = None,
                 secure: Callable[[zmq.Socket], None] | None = None) -> None:
        self.ctx = ctx
        self.bus = bus
        self.frontend_addrs = frontend
        self.backend_addrs = backend
        self._topics = topics
        self._secure = secure
        self.services: dict[bytes, _Service] = {}
        self.workers: dict[bytes, _Worker] = {}
        self.counters: dict[str, int] = {
            "requests": 0, "replies": 0, "errors": 0, "unknown_service": 0, "workers_lost": 0,
            "late_replies": 0, "undeliverable": 0, "malformed": 0,
        }
        self.malformed: dict[str, int] = {}
        self.started_at = 0.0
        self.bound: dict[str, list[str]] = {"frontend": [], "backend": []}
        self.failure: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._ctrl_addr = f"inproc://aitrados-rpc-ctrl-{id(self)}"
        self._fe: zmq.Socket | None = None
        self._be: zmq.Socket | None = None
        self._internal: dict[str, Callable[[dict[str, Any]], Any]] = {
            "ping": self._m_ping,
            "services": self._m_services,
            "topics": self._m_topics,
            "stats": self._m_stats,
        }

    # ---------------------------------------------------------------- setup
    def _socket(self) -> zmq.Socket:
        from .binding import router_socket

        s = router_socket(self.ctx, zmq.ROUTER, self.bus, self._secure)
        s.router_mandatory = True  # sending to a gone peer raises instead of dropping silently
        return s

    def bind(self) -> dict[str, list[str]]:
        """Create and bind both ROUTER sockets; returns the bound addresses (real tcp ports)."""
        from .binding import bind_all

        self._fe = self._socket()
        self._be = self._socket()
        bind_all(self._fe, self.frontend_addrs, "rpc_frontend", self.bound["frontend"])
        bind_all(self._be, self.backend_addrs, "rpc_backend", self.bound["backend"])
        return self.bound

    def start(self) -> None:
        """Run the broker loop in a daemon thread."""
        self._ctrl = self.ctx.socket(zmq.PAIR)
        self._ctrl.bind(self._ctrl_addr)
        self.started_at = time.time()
        self._thread = threading.Thread(target=self._run, name="aitrados-rpc-router", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop and close the sockets."""
        if self._thread is not None:
            c = self.ctx.socket(zmq.PAIR)
            c.linger = 0
            c.connect(self._ctrl_addr)
            c.send(b"STOP")
            self._thread.join(timeout)
            c.close()
            self._ctrl.close(0)
            self._thread = None
        else:
            for s in (self._fe, self._be):
                if s is not None:
                    s.close(0)

    @property
    def alive(self) -> bool:
        """True while the broker thread runs."""
        return self._thread is not None and self._thread.is_alive()

    # ---------------------------------------------------------------- loop
    def _run(self) -> None:
        fe, be = self._fe, self._be
        assert fe is not None and be is not None
        poller = zmq.Poller()
        poller.register(fe, zmq.POLLIN)
        poller.register(be, zmq.POLLIN)
        poller.register(self._ctrl, zmq.POLLIN)
        interval = self.bus.heartbeat_interval
        next_hb = time.monotonic() + interval
        try:
            while True:
                timeout = max(0.0, next_hb - time.monotonic())
                ready = dict(poller.poll(timeout * 1000))
                if ready:
                    if self._ctrl in ready:
                        break
                    now = time.monotonic()
                    if be in ready:
                        self._drain_backend(be, fe, now)
                    if fe in ready:
                        self._drain_frontend(fe, be, now)
                now = time.monotonic()
                if now >= next_hb:
                    self._heartbeat(be, fe, now)
                    next_hb = now + interval
        except BaseException as exc:  # never die silently
            self.failure = exc
            logger.exception("RPC router stopped by an internal error: {}", exc)
        finally:
            fe.close(0)
            be.close(0)

    def _malformed(self, reason: str) -> None:
        self.counters["malformed"] += 1
        self.malformed[reason] = self.malformed.get(reason, 0) + 1
        logger.debug("RPC router dropped a malformed message: {}", reason)

    # ---------------------------------------------------------------- clients
    def _drain_frontend(self, fe: zmq.Socket, be: zmq.Socket, now: float) -> None:
        recv = fe.recv_multipart
        for _ in range(_DRAIN_LIMIT):
            try:
                frames = recv(_NOBLOCK)
            except zmq.Again:
                return
            if len(frames) != 6 or frames[1] != P.CLIENT_TAG or frames[2] != P.REQUEST:
                self._malformed("client frame layout")
                continue
            client, _, _, name, rid, body = frames
            if not rid or len(rid) > P.MAX_REQUEST_ID:
                self._malformed("request id length")
                continue
            self.counters["requests"] += 1
            svc = self.services.get(name)
            while svc is not None and svc.workers:
                w = svc.pick()
                try:
                    be.send(w.wid, _MORE)
                    be.send(P.WORKER_TAG, _MORE)
                    be.send(P.REQUEST, _MORE)
                    be.send(client, _MORE)
                    be.send(rid, _MORE)
                    be.send(body)
                except zmq.ZMQError:  # EHOSTUNREACH: the worker's connection is gone
                    self._drop_worker(w, fe, "its connection closed")
                    continue
                w.inflight.add((client, rid))
                svc.requests += 1
                break
            else:
                self._no_service(fe, client, name, rid, body)

    def _no_service(self, fe: zmq.Socket, client: bytes, name: bytes, rid: bytes, body: bytes) -> None:
        try:
            text = name.decode("utf-8")
        except UnicodeDecodeError:
            self._malformed("service name not UTF-8")
            return
        if text == P.MIDDLEWARE_SERVICE:
            self._internal_call(fe, client, name, rid, body)
            return
        self.counters["unknown_service"] += 1
        known = sorted(s.decode() for s in self.services) + [P.MIDDLEWARE_SERVICE]
        self._reply(fe, client, P.ERROR, name, rid, P.error_body(
            "UnknownService",
            f"no service named {text!r} is registered; registered services: {', '.join(known)}",
        ))

    def _reply(self, fe: zmq.Socket, client: bytes, cmd: bytes, name: bytes, rid: bytes, body: bytes) -> None:
        try:
            fe.send(client, _MORE)
            fe.send(P.CLIENT_TAG, _MORE)
            fe.send(cmd, _MORE)
            fe.send(name, _MORE)
            fe.send(rid, _MORE)
            fe.send(body)
        except zmq.ZMQError:
            self.counters["undeliverable"] += 1
            return
        self.counters["errors" if cmd == P.ERROR else "replies"] += 1

    def _internal_call(self, fe: zmq.Socket, client: bytes, name: bytes, rid: bytes, body: bytes) -> None:
        try:
            req = P.decode(body)
            method = req["method"]
            params = req.get("params") or {}
            fn = self._internal.get(method)
        except Exception as exc:
            self._reply(fe, client, P.ERROR, name, rid, P.error_body("BadRequest", f"undecodable request: {exc}"))
            return
        if fn is None:
            self._reply(fe, client, P.ERROR, name, rid, P.error_body(
                "MethodNotFound", f"service 'middleware' has no method {method!r}; methods: {', '.join(sorted(self._internal))}"))
            return
        try:
            out = P.encode(fn(params))
        except Exception as exc:
            self._reply(fe, client, P.ERROR, name, rid,
                        P.error_body(type(exc).__name__, str(exc), traceback.format_exc()))
            return
        self._reply(fe, client, P.REPLY, name, rid, out)

    # ---------------------------------------------------------------- workers
    def _drain_backend(self, be: zmq.Socket, fe: zmq.Socket, now: float) -> None:
        recv = be.recv_multipart
        workers = self.workers
        for _ in range(_DRAIN_LIMIT):
            try:
                frames = recv(_NOBLOCK)
            except zmq.Again:
                return
            n = len(frames)
            if n < 3 or frames[1] != P.WORKER_TAG:
                self._malformed("worker frame layout")
                continue
            wid = frames[0]
            cmd = frames[2]
            w = workers.get(wid)
            if cmd == P.REPLY or cmd == P.ERROR:
                if n != 6:
                    self._malformed("worker reply layout")
                    continue
                if w is None:
                    self.counters["late_replies"] += 1
                    self._tell_disconnect(be, wid)
                    continue
                w.last_seen = now
                key = (frames[3], frames[4])
                try:
                    w.inflight.remove(key)
                except KeyError:
                    self.counters["late_replies"] += 1
                    continue
                w.served += 1
                self._reply(fe, frames[3], cmd, w.service, frames[4], frames[5])
            elif cmd == P.HEARTBEAT:
                if w is None:
                    self._tell_disconnect(be, wid)
                else:
                    w.last_seen = now
            elif cmd == P.READY:
                self._on_ready(be, fe, wid, frames, now)
            elif cmd == P.DISCONNECT:
                if w is not None:
                    self._drop_worker(w, fe, "it said goodbye")
            else:
                self._malformed("unknown worker command")

    def _tell_disconnect(self, be: zmq.Socket, wid: bytes) -> None:
        """Ask an unknown worker (e.g. after a router restart) to register again."""
        try:
            be.send(wid, _MORE)
            be.send(P.WORKER_TAG, _MORE)
            be.send(P.DISCONNECT)
        except zmq.ZMQError:
            pass

    def _on_ready(self, be: zmq.Socket, fe: zmq.Socket, wid: bytes, frames: list[bytes], now: float) -> None:
        if len(frames) != 5:
            self._malformed("READY layout")
            return
        name = frames[3]
        try:
            text = name.decode("utf-8")
            info = P.decode(frames[4]) if frames[4] else {}
            if not isinstance(info, dict):
                raise ValueError("info is not a map")
        except (UnicodeDecodeError, P.DecodeError, ValueError):
            self._malformed("READY name or info undecodable")
            return
        if not text or len(name) > P.MAX_SERVICE_NAME or text == P.MIDDLEWARE_SERVICE:
            self._malformed("READY service name invalid or reserved")
            return
        old = self.workers.get(wid)
        if old is not None:
            if old.service == name:
                old.last_seen = now
                return
            self._drop_worker(old, fe, "it re-registered under another name")
        w = _Worker(wid, name, info, now)
        self.workers[wid] = w
        svc = self.services.get(name)
        if svc is None:
            svc = self.services[name] = _Service(name)
        svc.workers.append(w)
        logger.info("RPC backend '{}' is submitting to Register RPC Service", text)
        logger.debug("worker {} (pid {}, host {}) registered for '{}'; {} worker(s) now",
                     wid.hex(), info.get("pid"), info.get("host"), text, len(svc.workers))

    def _drop_worker(self, w: _Worker, fe: zmq.Socket, why: str) -> None:
        """Forget *w* and answer every request it held with ServiceUnavailable."""
        self.workers.pop(w.wid, None)
        svc = self.services.get(w.service)
        if svc is not None:
            try:
                svc.workers.remove(w)
            except ValueError:
                pass
            if not svc.workers:
                del self.services[w.service]
        name = w.service.decode()
        self.counters["workers_lost"] += 1
        level = "INFO" if why == "it said goodbye" and not w.inflight else "WARNING"
        logger.log(level, "RPC worker {} of service '{}' dropped: {}; {} request(s) in flight answered with an error",
                   w.wid.hex(), name, why, len(w.inflight))
        body = P.error_body("ServiceUnavailable",
                            f"the worker of service {name!r} serving this request was lost ({why}); retry the call")
        for client, rid in w.inflight:
            self._reply(fe, client, P.ERROR, w.service, rid, body)
        w.inflight.clear()

    def _heartbeat(self, be: zmq.Socket, fe: zmq.Socket, now: float) -> None:
        deadline = now - self.bus.heartbeat_interval * self.bus.heartbeat_liveness
        for w in list(self.workers.values()):
            if w.last_seen < deadline:
                self._drop_worker(w, fe, f"no heartbeat for {now - w.last_seen:.1f}s")
                continue
            try:
                be.send(w.wid, _MORE)
                be.send(P.WORKER_TAG, _MORE)
                be.send(P.HEARTBEAT)
            except zmq.ZMQError:
                self._drop_worker(w, fe, "its connection closed")

    # ---------------------------------------------------------------- middleware service
    def _m_ping(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"pong": True, "time": time.time(), "protocol": P.PROTOCOL_VERSION, "version": __version__,
                "pid": os.getpid(), "host": _socket.gethostname()}

    def _m_services(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            s.name.decode(): {
                "requests": s.requests,
                "workers": [{"id": w.wid.hex(), "inflight": len(w.inflight), "served": w.served, **w.info}
                            for w in s.workers],
            }
            for s in self.services.values()
        }

    def _m_topics(self, params: dict[str, Any]) -> dict[str, Any]:
        stats = self._topics() if self._topics else {}
        return {k: v for k, v in stats.items() if k != "_router"}

    def _m_stats(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "rpc": {**self.counters, "malformed_by_reason": dict(self.malformed),
                    "services": len(self.services), "workers": len(self.workers),
                    "uptime": time.time() - self.started_at, "bound": self.bound},
            "pubsub": (self._topics() or {}).get("_router", {}) if self._topics else {},
        }
