"""The RPC router: a Majordomo-style broker between clients and named services.

Clients (DEALER) connect to the frontend ROUTER; service workers (DEALER) connect to the
backend ROUTER and announce themselves with READY. The router forwards each request to the
least-busy live worker of the named service and the reply back to the client. Heartbeats
run both ways; a worker that stays silent for ``heartbeat_interval * heartbeat_liveness``
seconds is dropped and every request it held is answered with a ``ServiceUnavailable``
error at once. Malformed frames are dropped and counted; the router never dies on input.

The router never blocks on a peer: every send is non-blocking. A message a peer cannot take
(its queue is full) is dropped and counted against that peer (``middleware.stats``); a peer
that keeps refusing is cut off for a while (see :mod:`.peers`). A client may have at most
``bus.max_inflight_per_client`` requests in flight; more are answered ``TooManyRequests``.
With a service token (the middleware always has one) a READY must carry it in its info map
(``token``) or it is refused with an ``Unauthorized`` ERROR, logged and counted.

The router answers the built-in ``middleware`` service itself (ping, services, topics,
stats), so it works with no worker at all.

Hot path: one thread, non-blocking drains (at most ``_DRAIN_LIMIT`` messages per socket and
wake-up) and non-blocking sends; the router never decodes request bodies.
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
from zmq.backend import zmq_poll

from .. import __version__
from .settings import BusSettings
from . import protocol as P
from .latency import LatencyBuckets
from .fastio import POLLIN, drain, send_frames
from .peers import PeerLedger
from .tokens import same_token

_NOBLOCK = int(zmq.NOBLOCK)
_DRAIN_LIMIT = 200  # per socket and wake-up: a flood on one side never holds up the other for long

# outcomes of one non-blocking send
_SENT, _FULL, _CUT, _GONE = 0, 1, 2, 3

#: Services whose latency counts ``middleware.stats`` keeps (a name beyond it is measured but not kept).
_MAX_LATENCY_SERVICES = 1000

#: READY info fields kept (what a worker claims about itself) and their types; anything else is ignored.
_CLAIMS: dict[str, type | tuple[type, ...]] = {"pid": int, "host": str, "methods": list, "restarts": int}


def _claimed(info: dict[str, Any]) -> dict[str, Any]:
    """The worker-claimed fields of a READY info map that the router keeps (typed, bounded)."""
    out: dict[str, Any] = {}
    for k, t in _CLAIMS.items():
        v = info.get(k)
        if isinstance(v, t) and not isinstance(v, bool):
            if isinstance(v, str):
                v = v[:255]
            elif isinstance(v, list):
                v = [m[:255] for m in v[:1000] if isinstance(m, str)]
            out[k] = v
    return out


class _Worker:
    """One registered worker: its routing id, service, liveness and in-flight requests."""

    __slots__ = ("wid", "service", "last_seen", "inflight", "info", "served", "registered", "latency")

    def __init__(self, wid: bytes, service: bytes, info: dict[str, Any], now: float,
                 latency: LatencyBuckets | None = None) -> None:
        self.wid = wid
        self.service = service
        self.last_seen = now
        #: (client, request id) -> arrival time at the router (monotonic), per request in flight
        self.inflight: dict[tuple[bytes, bytes], float] = {}
        self.latency = latency or LatencyBuckets()
        self.info = info
        self.served = 0
        self.registered = now


class _Service:
    """A service name and the workers serving it."""

    __slots__ = ("name", "workers", "requests", "rr")

    def __init__(self, name: bytes) -> None:
        self.name = name
        self.workers: list[_Worker] = []
        self.requests = 0
        self.rr = 0

    def pick(self, exclude: set[bytes] | None = None) -> _Worker | None:
        """The worker with the fewest requests in flight (round robin among equals), not in *exclude*."""
        ws = self.workers
        if exclude:
            ws = [w for w in ws if w.wid not in exclude]
            if not ws:
                return None
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
    :param topics: optional callable returning the pub/sub topic statistics for ``middleware.topics``,
        already encoded (``msgspec.Raw``) so answering costs nothing per topic on this thread
    :param secure: applies CURVE server options to a router socket, when CURVE is on
    :param service_token: the token a READY must carry; None accepts any worker (tests, embedding)
    :param pubsub_stats: optional callable returning the pub/sub router's counters for ``middleware.stats``
    :param report_gaps: optional callable ``(reporter, gaps)`` keeping another process's gap counts
        (``middleware.report_gaps``; raises ValueError on bad input)
    """

    def __init__(self, ctx: zmq.Context, bus: BusSettings, frontend: list[str], backend: list[str],
                 topics: Callable[[], Any] | None = None,
                 secure: Callable[[zmq.Socket], None] | None = None,
                 service_token: str | None = None,
                 pubsub_stats: Callable[[], dict[str, Any]] | None = None,
                 report_gaps: Callable[[Any, Any], None] | None = None) -> None:
        self.ctx = ctx
        self.bus = bus
        self.frontend_addrs = frontend
        self.backend_addrs = backend
        self._topics = topics
        self._pubsub_stats = pubsub_stats
        self._report_gaps = report_gaps
        self._secure = secure
        self.services: dict[bytes, _Service] = {}
        #: Level of registration and goodbye lines (the middleware sets DEBUG for quiet runs).
        self.routine_level = "INFO"
        self.workers: dict[bytes, _Worker] = {}
        self.counters: dict[str, int] = {
            "requests": 0, "replies": 0, "errors": 0, "unknown_service": 0, "workers_lost": 0,
            "late_replies": 0, "undeliverable": 0, "malformed": 0, "too_many_requests": 0, "busy": 0,
            "refused_ready": 0,
        }
        self._service_token = service_token
        self.peers = PeerLedger(bus.peer_refusal_limit, bus.peer_cutoff_seconds)
        self.malformed: dict[str, int] = {}
        #: Round-trip latency counts per service name, kept when its workers go (``middleware.stats``).
        self.latency: dict[bytes, LatencyBuckets] = {}
        self.started_at = 0.0
        self.bound: dict[str, list[str]] = {"frontend": [], "backend": []}
        self.failure: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._ctrl_addr = f"inproc://aitrados-rpc-ctrl-{id(self)}"
        #: Monotonic time of the router's current wake-up (what its message handlers count from).
        self._now = 0.0
        self._fe: zmq.Socket | None = None
        self._be: zmq.Socket | None = None
        self._internal: dict[str, Callable[[dict[str, Any]], Any]] = {
            "ping": self._m_ping,
            "services": self._m_services,
            "topics": self._m_topics,
            "stats": self._m_stats,
            "report_gaps": self._m_report_gaps,
        }

    # ---------------------------------------------------------------- setup
    def _socket(self) -> zmq.Socket:
        from .binding import router_socket

        s = router_socket(self.ctx, zmq.ROUTER, self.bus, self._secure)
        # a send to a gone peer raises EHOSTUNREACH and to a full one EAGAIN (never a silent drop)
        s.router_mandatory = True
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
            self._close_sockets()

    @property
    def alive(self) -> bool:
        """True while the broker thread runs."""
        return self._thread is not None and self._thread.is_alive()

    # ---------------------------------------------------------------- loop
    def _run(self) -> None:
        fe, be = self._fe, self._be
        assert fe is not None and be is not None
        # zmq_poll itself, with int events: pyzmq's Poller wraps each event mask in an IntFlag
        items = [(fe, POLLIN), (be, POLLIN), (self._ctrl, POLLIN)]
        interval = self.bus.heartbeat_interval
        next_hb = time.monotonic() + interval
        on_client, on_worker = self._on_client, self._on_worker
        # A socket readable in two polls running is in a burst (pipelined calls): drain it. Otherwise
        # take its one message and poll again: zmq_poll checks every socket in one C call, cheaper than
        # a ZMQ_EVENTS check per message (sequential calls alternate between the two sockets).
        fe_burst = be_burst = False
        try:
            while True:
                timeout = max(0.0, next_hb - time.monotonic())
                ready = zmq_poll(items, int(timeout * 1000))
                now = time.monotonic()
                if ready:
                    socks = [s for s, _ in ready]
                    if self._ctrl in socks:
                        break
                    self._now = now
                    if be in socks:
                        drain(be, on_worker, _DRAIN_LIMIT if be_burst else 1, waiting=True)
                        be_burst = True
                    else:
                        be_burst = False
                    if fe in socks:
                        drain(fe, on_client, _DRAIN_LIMIT if fe_burst else 1, waiting=True)
                        fe_burst = True
                    else:
                        fe_burst = False
                if now >= next_hb:
                    self._now = now
                    self._heartbeat(be, fe, now)
                    next_hb = now + interval
        except BaseException as exc:  # never die silently
            self.failure = exc
            logger.exception("RPC router stopped by an internal error: {}", exc)
        finally:
            self._close_sockets()

    def _close_sockets(self) -> None:
        """Unbind the inproc names (synchronous: a router restarted in this process can bind them
        at once) and close both ROUTER sockets."""
        from .binding import unbind_inproc

        for s, addrs in ((self._fe, self.bound["frontend"]), (self._be, self.bound["backend"])):
            if s is not None and not s.closed:
                unbind_inproc(s, addrs)
                s.close(0)

    def _send(self, sock: zmq.Socket, frames: list[bytes], now: float) -> int:
        """Send *frames* (routing id first) without ever blocking; returns _SENT, _FULL, _CUT or _GONE.

        A peer whose queue is full gets the message dropped and counted against it; the refusal
        that reaches ``peer_refusal_limit`` in a row cuts it off (_CUT).
        """
        peer = frames[0]
        try:
            send_frames(sock, frames, _NOBLOCK)
        except zmq.Again:
            if self.peers.refused(peer, now):
                logger.warning("RPC peer {} cut off for {:g}s: it left {} messages in a row untaken",
                               peer.hex(), self.peers.cutoff_seconds, self.peers.refusal_limit)
                return _CUT
            return _FULL
        except zmq.ZMQError:  # EHOSTUNREACH: the peer's connection is gone
            return _GONE
        if self.peers.strikes:  # (PeerLedger.delivered, inlined for the common case of no strikes)
            self.peers.delivered(peer)
        return _SENT

    def _malformed(self, reason: str) -> None:
        self.counters["malformed"] += 1
        self.malformed[reason] = self.malformed.get(reason, 0) + 1
        logger.debug("RPC router dropped a malformed message: {}", reason)

    # ---------------------------------------------------------------- clients
    def _on_client(self, frames: list[bytes]) -> None:
        """Route one message from a client: forward a request, or answer it (errors, ``middleware``)."""
        fe, be, now = self._fe, self._be, self._now
        if len(frames) != 6 or frames[1] != P.CLIENT_TAG or frames[2] != P.REQUEST:
            self._malformed("client frame layout")
            return
        client, _, _, name, rid, body = frames
        if self.peers.cut_until and self.peers.is_cut(client, now):
            self.peers.discard()
            return
        if not rid or len(rid) > P.MAX_REQUEST_ID:
            self._malformed("request id length")
            return
        self.counters["requests"] += 1
        svc = self.services.get(name)
        if svc is None:
            self._no_service(fe, client, name, rid, body)
            return
        if self.peers.inflight_of(client) >= self.bus.max_inflight_per_client:
            self.counters["too_many_requests"] += 1
            self._reply(fe, client, P.ERROR, name, rid, P.error_body(
                "TooManyRequests", f"this client already has {self.bus.max_inflight_per_client} requests in "
                "flight (bus.max_inflight_per_client); wait for replies before sending more"))
            return
        self._forward(be, fe, svc, client, name, rid, body, now)

    def _forward(self, be: zmq.Socket, fe: zmq.Socket, svc: _Service, client: bytes, name: bytes,
                 rid: bytes, body: bytes, now: float) -> None:
        """Give a request to a worker of *svc* that can take it; ``Busy`` when none can."""
        full: set[bytes] | None = None
        while svc.workers:
            w = svc.pick(full)
            if w is None:
                break
            r = self._send(be, [w.wid, P.WORKER_TAG, P.REQUEST, client, rid, body], now)
            if r == _SENT:
                w.inflight[(client, rid)] = now
                self.peers.opened(client)
                svc.requests += 1
                return
            if r == _GONE:
                self._drop_worker(w, fe, "its connection closed")
            elif r == _CUT:
                self._drop_worker(w, fe, "it stopped taking requests (cut off)")
            else:
                full = full or set()
                full.add(w.wid)
        if svc.workers:
            self.counters["busy"] += 1
            self._reply(fe, client, P.ERROR, name, rid, P.error_body(
                "Busy", f"every worker of service {name.decode(errors='replace')!r} has a full queue; retry later"))
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
        """Send a reply to *client* without blocking; one it cannot take is dropped and counted."""
        if self._send(fe, [client, P.CLIENT_TAG, cmd, name, rid, body], self._now) != _SENT:
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
    def _on_worker(self, frames: list[bytes]) -> None:
        """Handle one message from a worker: a reply to pass on, a heartbeat, READY or goodbye."""
        fe, be, now = self._fe, self._be, self._now
        n = len(frames)
        if n < 3 or frames[1] != P.WORKER_TAG:
            self._malformed("worker frame layout")
            return
        wid = frames[0]
        if self.peers.cut_until and self.peers.is_cut(wid, now):
            self.peers.discard()
            return
        cmd = frames[2]
        w = self.workers.get(wid)
        if cmd == P.REPLY or cmd == P.ERROR:
            if n != 6:
                self._malformed("worker reply layout")
                return
            if w is None:
                self.counters["late_replies"] += 1
                self._tell_disconnect(be, wid, now)
                return
            w.last_seen = now
            key = (frames[3], frames[4])
            try:
                w.latency.observe(now - w.inflight.pop(key))
            except KeyError:
                self.counters["late_replies"] += 1
                return
            w.served += 1
            self.peers.closed(frames[3])
            self._reply(fe, frames[3], cmd, w.service, frames[4], frames[5])
        elif cmd == P.HEARTBEAT:
            if w is None:
                self._tell_disconnect(be, wid, now)
            else:
                w.last_seen = now
        elif cmd == P.READY:
            self._on_ready(be, fe, wid, frames, now)
        elif cmd == P.DISCONNECT:
            if w is not None:
                self._drop_worker(w, fe, "it said goodbye")
        else:
            self._malformed("unknown worker command")

    def _tell_disconnect(self, be: zmq.Socket, wid: bytes, now: float) -> None:
        """Ask an unknown worker (e.g. after a router restart) to register again."""
        self._send(be, [wid, P.WORKER_TAG, P.DISCONNECT], now)

    def _refuse_ready(self, be: zmq.Socket, wid: bytes, name: bytes, type_: str, why: str, now: float) -> None:
        """Answer a READY that may not register with an ERROR, count it and log it (the first ones, then rarely)."""
        self.counters["refused_ready"] += 1
        n = self.counters["refused_ready"]
        if n <= 20 or n % 1000 == 0:
            logger.warning("RPC router refused READY #{} from worker {} for service {!r}: {}",
                           n, wid.hex(), name.decode("utf-8", "backslashreplace"), why)
        self._send(be, [wid, P.WORKER_TAG, P.ERROR, P.error_body(type_, why)], now)

    def _on_ready(self, be: zmq.Socket, fe: zmq.Socket, wid: bytes, frames: list[bytes], now: float) -> None:
        if len(frames) != 5:
            self._malformed("READY layout")
            return
        name = frames[3]
        try:
            info = P.decode(frames[4]) if frames[4] else {}
            if not isinstance(info, dict):
                raise ValueError("info is not a map")
        except (P.DecodeError, ValueError):
            self._malformed("READY info undecodable")
            return
        problem = P.service_name_problem(name)
        if problem is not None:
            self._malformed("READY service name invalid or reserved")
            self._refuse_ready(be, wid, name, "BadRequest", problem, now)
            return
        if self._service_token is not None and not same_token(info.get("token"), self._service_token):
            self._refuse_ready(be, wid, name, "Unauthorized",
                               "READY without the middleware's service token (bus.service_token_file)", now)
            return
        text = name.decode("utf-8")
        old = self.workers.get(wid)
        if old is not None:
            if old.service == name:
                old.last_seen = now
                return
            self._drop_worker(old, fe, "it re-registered under another name")
        lat = self.latency.get(name)
        if lat is None:
            lat = LatencyBuckets()
            if len(self.latency) < _MAX_LATENCY_SERVICES:
                self.latency[name] = lat
        w = _Worker(wid, name, _claimed(info), now, lat)
        self.workers[wid] = w
        svc = self.services.get(name)
        if svc is None:
            svc = self.services[name] = _Service(name)
        svc.workers.append(w)
        logger.log(self.routine_level, "RPC backend '{}' is submitting to Register RPC Service", text)
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
        level = self.routine_level if why == "it said goodbye" and not w.inflight else "WARNING"
        logger.log(level, "RPC worker {} of service '{}' dropped: {}; {} request(s) in flight answered with an error",
                   w.wid.hex(), name, why, len(w.inflight))
        body = P.error_body("ServiceUnavailable",
                            f"the worker of service {name!r} serving this request was lost ({why}); retry the call")
        for client, rid in w.inflight:
            self.peers.closed(client)
            self._reply(fe, client, P.ERROR, w.service, rid, body)
        w.inflight.clear()

    def _heartbeat(self, be: zmq.Socket, fe: zmq.Socket, now: float) -> None:
        self.peers.purge(now)
        deadline = now - self.bus.heartbeat_interval * self.bus.heartbeat_liveness
        for w in list(self.workers.values()):
            if w.last_seen < deadline:
                self._drop_worker(w, fe, f"no heartbeat for {now - w.last_seen:.1f}s")
                continue
            r = self._send(be, [w.wid, P.WORKER_TAG, P.HEARTBEAT], now)
            if r == _GONE:
                self._drop_worker(w, fe, "its connection closed")
            elif r == _CUT:
                self._drop_worker(w, fe, "it stopped taking messages (cut off)")

    # ---------------------------------------------------------------- middleware service
    def _m_ping(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"pong": True, "time": time.time(), "protocol": P.PROTOCOL_VERSION, "version": __version__,
                "pid": os.getpid(), "host": _socket.gethostname(),
                "heartbeat_interval": self.bus.heartbeat_interval, "heartbeat_liveness": self.bus.heartbeat_liveness}

    def _m_services(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            s.name.decode(): {
                "requests": s.requests,
                # what the worker claims first, so the router's own measurements always win
                "workers": [{**w.info, "id": w.wid.hex(), "inflight": len(w.inflight), "served": w.served,
                             "registered_for": round(time.monotonic() - w.registered, 3)}
                            for w in s.workers],
            }
            for s in self.services.values()
        }

    def _m_topics(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._topics() if self._topics else {}

    def _m_report_gaps(self, params: dict[str, Any]) -> None:
        if self._report_gaps is None:
            raise ValueError("this router keeps no gap reports (no pub/sub router beside it)")
        self._report_gaps(params.get("reporter"), params.get("gaps"))

    def _m_stats(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "rpc": {**self.counters, "malformed_by_reason": dict(self.malformed),
                    "peers": self.peers.stats(time.monotonic()),
                    "services": len(self.services), "workers": len(self.workers),
                    "uptime": time.time() - self.started_at, "bound": self.bound,
                    "latency": {k.decode(): v.snapshot() for k, v in list(self.latency.items())}},
            "pubsub": self._pubsub_stats() if self._pubsub_stats else {},
        }
