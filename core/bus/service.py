"""Services: a class whose public methods become RPC methods, and the worker that serves it.

A ``ServiceWorker`` connects a DEALER to the router's backend, announces the service with
READY, answers requests, and exchanges heartbeats with the router. Coroutine methods run
concurrently as tasks; plain methods run inline (fast) unless marked
``@rpc_method(blocking=True)``, which runs them in a thread pool so a slow call never
holds up the others. When the router goes silent the worker reconnects and registers again.

A worker never dies on input: whatever a request holds, it is answered (``BadRequest`` when it
cannot be understood) and the worker keeps serving. READY carries the middleware's service
token (read from ``bus.service_token_file`` unless given); a method marked
``@rpc_method(role="operator")`` or ``role="service"`` answers ``Unauthorized`` unless the
request carries that token (``auth`` in the body). In thread mode the worker supervises
itself: a crash of its loop is logged with its cause and the loop restarts, up to
``max_restarts`` within a minute, after which ``failure`` is set. Given a ``loop``, the
service's methods run on that event loop while the worker's own loop (and its heartbeats)
stays free, so a busy data loop never makes the service miss a heartbeat.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import os
import socket as _socket
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import zmq
from loguru import logger

from .settings import BusSettings
from . import protocol as P
from .errors import BusError
from .fastio import NOBLOCK as _NOBLOCK
from .fastio import drain, send_frames
from .tokens import read_token, same_token

#: Messages handled per wake-up of the worker's socket before its event loop runs other work.
_DRAIN_LIMIT = 200

#: Roles a method may require; ``operator`` includes ``service``.
ROLES = ("service", "operator")
_NO_ROLES: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Caller:
    """Who made the request being served: the router's id of the client connection and its roles."""

    client: bytes
    roles: frozenset[str]


_caller: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("aitrados_rpc_caller", default=None)


def current_caller() -> Caller | None:
    """The caller of the RPC method running now (None outside a request)."""
    return _caller.get()


def rpc_method(fn: Callable[..., Any] | None = None, *, name: str | None = None,
               blocking: bool = False, role: str | None = None) -> Any:
    """Mark a method's RPC options: another wire *name*, *blocking* (run in a thread pool), or the
    *role* (``service`` or ``operator``) a caller must prove with a token."""
    if role is not None and role not in ROLES:
        raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")

    def mark(f: Callable[..., Any]) -> Callable[..., Any]:
        f.__aitrados_rpc__ = {"name": name or f.__name__, "blocking": blocking, "role": role}  # type: ignore[attr-defined]
        return f

    return mark(fn) if fn is not None else mark


def method_role(fn: Callable[..., Any]) -> str | None:
    """The role an RPC method requires (None: anyone may call it)."""
    return getattr(fn, "__aitrados_rpc__", {}).get("role")


class Unauthorized(BusError):
    """Raise in an RPC method to refuse a caller; the reply's error type is ``Unauthorized``."""


class ServiceRefused(BusError, RuntimeError):
    """The router refused this worker's READY (no or a wrong service token, or a bad name)."""


class Service:
    """Base of RPC services: set ``name``; every public method is callable over the bus.

    Methods take keyword arguments and return msgpack-able values (dicts, lists, numbers,
    strings, datetimes, msgspec Structs).
    """

    name: ClassVar[str] = ""

    def rpc_methods(self) -> dict[str, tuple[Callable[..., Any], str]]:
        """Map wire name -> (bound method, kind) where kind is ``async``, ``blocking`` or ``inline``."""
        out: dict[str, tuple[Callable[..., Any], str]] = {}
        base = set(dir(Service))
        for attr in dir(self):
            if attr.startswith("_") or attr in base:
                continue
            fn = getattr(self, attr)
            if not callable(fn):
                continue
            opts = getattr(fn, "__aitrados_rpc__", {})
            kind = "async" if inspect.iscoroutinefunction(fn) else ("blocking" if opts.get("blocking") else "inline")
            out[opts.get("name", attr)] = (fn, kind)
        return out


class ServiceWorker:
    """Serves one ``Service`` on the router's backend.

    :param service: the service object (its ``name`` is the registered name)
    :param address: the router's backend address (``Endpoints.rpc_backend``)
    :param bus: bus settings (heartbeats, CURVE keys)
    :param context: ZeroMQ context; the process-wide one by default (needed for inproc)
    :param include_traceback: send the traceback with error replies
    :param token: the service token READY carries (default: read from the bus's token file)
    :param auth: token -> role of callers (default: the bus's operator and service tokens)
    :param loop: run the service's methods on this event loop (the worker keeps its own for heartbeats)
    :param max_restarts: thread mode: loop crashes within a minute after which the worker gives up
    """

    def __init__(self, service: Service, address: str, *, bus: BusSettings | None = None,
                 context: zmq.Context | None = None, include_traceback: bool = True,
                 token: str | None = None, auth: dict[str, str] | None = None,
                 loop: asyncio.AbstractEventLoop | None = None, max_restarts: int = 5) -> None:
        if not service.name:
            raise ValueError(f"{type(service).__name__} has no `name`; set the class attribute `name = '...'`")
        self.service = service
        self.address = address
        self.bus = bus or BusSettings()
        self.context = context or zmq.Context.instance()
        self.include_traceback = include_traceback
        self.methods = service.rpc_methods()
        self._signatures: dict[str, inspect.Signature | None] = {m: _signature(fn) for m, (fn, _) in self.methods.items()}
        self._keywords = {m: _keywords(sig) for m, sig in self._signatures.items() if sig is not None}
        #: wire name -> (method, kind, signature, (required, accepted) keywords, role): one lookup per request
        self._table: dict[str, tuple[Callable[..., Any], str, inspect.Signature | None,
                                     tuple[frozenset[str], frozenset[str]] | None, str | None]] = {
            m: (fn, kind, self._signatures[m], self._keywords.get(m), method_role(fn))
            for m, (fn, kind) in self.methods.items()}
        self._name = service.name.encode("utf-8")
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self.failure: BaseException | None = None
        self.served = 0
        self.dropped = 0
        self.errors = 0
        self.restarts = 0
        self.max_restarts = max_restarts
        self._target = loop
        self._token_given, self._auth_given = token, auth
        self._token: str | None = None
        self._auth: dict[str, str] = {}
        self._load_credentials()

    def _load_credentials(self) -> None:
        """The token READY carries and the callers' tokens: as given, or read again from the token files
        (a restarted middleware has new ones)."""
        self._token = self._token_given if self._token_given is not None else read_token(self.bus, "service")
        if self._auth_given is not None:
            self._auth = self._auth_given
            return
        auth: dict[str, str] = {}
        for kind in ("service", "operator"):
            t = read_token(self.bus, kind)  # type: ignore[arg-type]
            if t:
                auth[t] = kind
        self._auth = auth

    # ---------------------------------------------------------------- thread mode
    def start(self, timeout: float = 5.0) -> ServiceWorker:
        """Run the worker in a daemon thread with its own event loop; returns once READY is sent."""
        self._thread = threading.Thread(target=self._thread_main, name=f"aitrados-service-{self.service.name}",
                                        daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError(f"service {self.service.name!r} did not start within {timeout}s")
        if self.failure:
            raise self.failure
        return self

    def _thread_main(self) -> None:
        crashes: list[float] = []
        while True:
            try:
                asyncio.run(self.run())
                return
            except ServiceRefused as exc:
                self.failure = exc
                self._ready.set()
                logger.error("service worker {!r} stopped: {}", self.service.name, exc)
                return
            except BaseException as exc:
                now = time.monotonic()
                crashes = [t for t in crashes if now - t < 60.0] + [now]
                if len(crashes) > self.max_restarts or self._stop_asked:
                    self.failure = RuntimeError(f"service {self.service.name!r} crashed {len(crashes)} times "
                                                f"within a minute; last cause: {type(exc).__name__}: {exc}")
                    self.failure.__cause__ = exc
                    self._ready.set()
                    logger.opt(exception=exc).error("service worker {!r} gave up: {}", self.service.name, self.failure)
                    return
                self.restarts += 1
                logger.opt(exception=exc).error("service worker {!r} crashed ({}: {}); restart #{}",
                                                self.service.name, type(exc).__name__, exc, self.restarts)
                time.sleep(min(2.0, 0.05 * 2 ** len(crashes)))

    _stop_asked = False

    def stop(self, timeout: float = 5.0) -> None:
        """Say goodbye to the router and stop (thread mode or from another thread)."""
        self._stop_asked = True
        loop, cb = self._loop, getattr(self, "_stopping_cb", None)
        if loop is not None and cb is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(cb)
            except RuntimeError:
                pass
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    # ---------------------------------------------------------------- loop
    def _connect(self) -> zmq.Socket:
        sock = self.context.socket(zmq.DEALER)
        sock.linger = 0
        sock.sndhwm = sock.rcvhwm = self.bus.hwm
        from .security import apply_client

        apply_client(sock, self.bus, self.address)
        sock.connect(self.address)
        try:  # a DEALER queues while it connects; only a full queue refuses (the watchdog then reconnects)
            send_frames(sock, (P.WORKER_TAG, P.READY, self._name, P.encode(self._info())), _NOBLOCK)
        except zmq.Again:
            pass
        return sock

    async def run(self) -> None:
        """Serve until ``stop()``; reconnects when the router stops answering heartbeats.

        The socket is a plain (not asyncio) DEALER watched with ``loop.add_reader`` on its file
        descriptor: on each wake-up every waiting message is handled without blocking
        (``_on_readable``), which costs far less per request than zmq.asyncio's receive futures.
        """
        if self._stop_asked:  # stopped while restarting after a crash
            return
        loop = self._loop = asyncio.get_running_loop()
        me = asyncio.current_task()
        assert me is not None
        self._stopping_cb = lambda: me.cancel()
        self._sync = self._connect()
        self._last_router = time.monotonic()
        self._draining = self._drain_scheduled = False
        hb = loop.create_task(self._heartbeats())
        self._ready.set()
        try:
            while True:
                fd = self._sync.FD
                self._wake = loop.create_future()
                loop.add_reader(fd, self._on_readable)
                try:
                    self._on_readable()  # what arrived before the reader was watching
                    await self._wake  # set by the watchdog (reconnect) or with a fatal error
                finally:
                    loop.remove_reader(fd)
                self._sync.close(0)
                self._sync = self._connect()
                self._last_router = time.monotonic()
        except asyncio.CancelledError:
            pass
        finally:
            hb.cancel()
            for t in list(self._tasks):
                t.cancel()
            try:
                send_frames(self._sync, (P.WORKER_TAG, P.DISCONNECT), _NOBLOCK)
            except zmq.ZMQError:
                pass
            self._sync.close(linger=100)

    async def _heartbeats(self) -> None:
        """Send a heartbeat every interval; reconnect when the router has been silent too long."""
        interval = self.bus.heartbeat_interval
        patience = interval * self.bus.heartbeat_liveness
        while True:
            await asyncio.sleep(interval)
            silent = time.monotonic() - self._last_router
            if silent > patience:
                logger.warning("router silent for {:.1f}s; service {!r} reconnects to {}",
                               silent, self.service.name, self.address)
                if not self._wake.done():
                    self._wake.set_result(None)
                self._last_router = time.monotonic()
            else:
                try:
                    send_frames(self._sync, (P.WORKER_TAG, P.HEARTBEAT), _NOBLOCK)
                except zmq.ZMQError:
                    pass
                self._recheck()

    def _on_readable(self) -> None:
        """Handle every message waiting on the socket, at most ``_DRAIN_LIMIT`` per call (the rest on the
        next loop pass, so tasks and heartbeats still run under a flood). libzmq's descriptor signals
        edges, not levels, so the loop runs until the socket reports nothing waiting."""
        self._drain_scheduled = False
        self._draining = True
        try:
            n = drain(self._sync, self._handle_safely, _DRAIN_LIMIT)
            if n:
                self._last_router = time.monotonic()
            if n < _DRAIN_LIMIT:
                return
            self._draining = False
            self._recheck()  # more may wait, and the descriptor will not signal them again
        except BaseException as exc:  # ServiceRefused, a socket error, a fault: ends this run, raised by run()
            if not self._wake.done():
                self._wake.set_exception(exc)
        finally:
            self._draining = False

    def _handle_safely(self, frames: list[bytes]) -> None:
        """Handle one message; an unexpected error is logged with its traceback and answered, never fatal."""
        try:
            self._handle(frames)
        except ServiceRefused:
            raise
        except Exception as exc:
            self.errors += 1
            logger.opt(exception=exc).error("service {!r} failed on a message: {}: {}",
                                            self.service.name, type(exc).__name__, exc)
            if len(frames) == 5 and frames[1] == P.REQUEST:
                try:
                    self._error(frames[2], frames[3], exc, "InternalError")
                except Exception:  # the reply itself cannot be sent: already logged above
                    pass

    def _handle(self, frames: list[bytes]) -> None:
        if len(frames) < 2 or frames[0] != P.WORKER_TAG:
            logger.debug("service {!r} ignored a malformed message from the router", self.service.name)
            return
        cmd = frames[1]
        if cmd == P.REQUEST and len(frames) == 5:
            self._dispatch(frames[2], frames[3], frames[4])
        elif cmd == P.DISCONNECT:
            logger.info("router asked service {!r} to register again", self.service.name)
            send_frames(self._sync, (P.WORKER_TAG, P.READY, self._name, P.encode(self._info())), _NOBLOCK)
            self._recheck()
        elif cmd == P.ERROR and len(frames) == 3:
            try:
                err = P.decode(frames[2])
                why = f"{err.get('type')}: {err.get('message')}"
            except Exception:
                why = "an undecodable error"
            sent = self._token
            self._load_credentials()
            if self._token != sent:  # the middleware restarted with a new token: try once more
                logger.info("service {!r} was refused; its token file changed, registering again", self.service.name)
                send_frames(self._sync, (P.WORKER_TAG, P.READY, self._name, P.encode(self._info())), _NOBLOCK)
                self._recheck()
                return
            raise ServiceRefused(f"the router refused service {self.service.name!r}: {why}")

    def _info(self) -> dict[str, Any]:
        """The READY info map (pid, host, methods, restarts, and the service token when there is one)."""
        if self._token_given is None:
            self._load_credentials()
        info: dict[str, Any] = {"pid": os.getpid(), "host": _socket.gethostname(), "methods": sorted(self.methods),
                                "restarts": self.restarts}
        if self._token:
            info["token"] = self._token
        return info

    # ---------------------------------------------------------------- requests
    def _send(self, cmd: bytes, client: bytes, rid: bytes, body: bytes) -> None:
        try:  # never block: a reply the router cannot take now is dropped (the client times out)
            send_frames(self._sync, (P.WORKER_TAG, cmd, client, rid, body), _NOBLOCK)
        except zmq.Again:
            self.dropped += 1
            logger.warning("service {!r} dropped a reply: the router is not taking messages", self.service.name)
            return
        self.served += 1
        self._recheck()

    def _recheck(self) -> None:
        """Call after every send on the socket outside ``_on_readable`` (replies of tasks, heartbeats, READY).

        A send can consume the edge of the descriptor's readiness signal while a message is waiting;
        without a re-check the service goes deaf until the heartbeat watchdog reconnects it. Schedules
        one ``_on_readable`` pass (inside one, its own loop re-checks).
        """
        if not self._draining and not self._drain_scheduled and self._loop is not None:
            self._drain_scheduled = True
            self._loop.call_soon(self._on_readable)

    def _error(self, client: bytes, rid: bytes, exc: BaseException, type_: str | None = None) -> None:
        """Answer *exc* as an ERROR reply; an exception raised by a method is logged once, with its traceback."""
        if type_ is None:
            if isinstance(exc, Unauthorized):
                logger.info("service {!r} refused a caller: {}", self.service.name, exc)
            else:
                logger.opt(exception=exc).warning("service {!r} answered an error: {}: {}",
                                                  self.service.name, type(exc).__name__, exc)
        tb = traceback.format_exc() if self.include_traceback else None
        self._send(P.ERROR, client, rid, P.error_body(type_ or type(exc).__name__, str(exc), tb))

    def _result(self, client: bytes, rid: bytes, method: str, result: Any) -> None:
        try:
            body = P.encode(result)
        except P.EncodeError as exc:
            self._send(P.ERROR, client, rid, P.error_body(
                "EncodeError", f"{self.service.name}.{method} returned a value that cannot be sent: {exc}"))
            return
        self._send(P.REPLY, client, rid, body)

    def _bad_request(self, client: bytes, rid: bytes, why: str) -> None:
        self._send(P.ERROR, client, rid, P.error_body("BadRequest", why))

    def _roles(self, auth: object) -> frozenset[str]:
        for token, role in self._auth.items():
            if same_token(auth, token):
                return frozenset(("service", "operator")) if role == "operator" else frozenset((role,))
        return frozenset()

    def _dispatch(self, client: bytes, rid: bytes, body: bytes) -> None:
        try:
            req = P.decode(body)
        except Exception as exc:
            self._bad_request(client, rid, f"undecodable body: {exc}")
            return
        if not isinstance(req, dict):
            self._bad_request(client, rid, "the body must be a map with `method` and `params`")
            return
        method = req.get("method")
        params = req.get("params")
        params = {} if params is None else params
        if not isinstance(method, str):
            self._bad_request(client, rid, f"`method` must be a string, not {type(method).__name__}")
            return
        if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
            self._bad_request(client, rid, "`params` must be a map with string keys")
            return
        entry = self._table.get(method)
        if entry is None:
            found = self.methods.get(method)  # a mapping may answer names it does not list (a proxy service)
            if found is None:
                self._send(P.ERROR, client, rid, P.error_body(
                    "MethodNotFound",
                    f"service {self.service.name!r} has no method {method[:100]!r}; methods: {', '.join(sorted(self.methods))}"))
                return
            entry = (found[0], found[1], None, None, method_role(found[0]))
        fn, kind, sig, kw, role = entry
        # the set check settles the usual call at C speed; Signature.bind only for the rest (and its message)
        if sig is not None and (kw is None or not (params.keys() >= kw[0] and params.keys() <= kw[1])):
            try:
                sig.bind(**params)
            except TypeError as exc:
                self._bad_request(client, rid, f"{self.service.name}.{method}{sig}: {exc}")
                return
        auth = req.get("auth")
        caller = Caller(client, _NO_ROLES if auth is None else self._roles(auth))
        if role is not None and role not in caller.roles:
            self._send(P.ERROR, client, rid, P.error_body(
                "Unauthorized", f"{self.service.name}.{method} needs the {role} token "
                f"(`aitrados call` sends the operator token it reads from the ipc folder)"))
            return
        if kind == "inline" and self._target is None:
            reset = _caller.set(caller)
            try:
                result = fn(**params)
            except Exception as exc:
                self._error(client, rid, exc)
                return
            finally:
                _caller.reset(reset)
            self._result(client, rid, method, result)
            return
        task = asyncio.ensure_future(self._run_task(fn, kind, params, client, rid, method, caller))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_task(self, fn: Callable[..., Any], kind: str, params: dict[str, Any],
                        client: bytes, rid: bytes, method: str, caller: Caller) -> None:
        async def call() -> Any:
            _caller.set(caller)  # this task's own context
            if kind == "async":
                return await fn(**params)
            if kind == "blocking":
                ctx = contextvars.copy_context()
                return await asyncio.get_running_loop().run_in_executor(None, lambda: ctx.run(fn, **params))
            return fn(**params)

        try:
            if self._target is not None:
                result = await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(call(), self._target))
            else:
                result = await call()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._error(client, rid, exc)
            return
        self._result(client, rid, method, result)


def _keywords(sig: inspect.Signature) -> tuple[frozenset[str], frozenset[str]] | None:
    """(required, accepted) keyword names of a signature that takes keywords only by name, else None:
    a call with the required names and no other binds exactly when it passes this set check."""
    required, accepted = set(), set()
    for p in sig.parameters.values():
        if p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            return None
        accepted.add(p.name)
        if p.default is p.empty:
            required.add(p.name)
    return frozenset(required), frozenset(accepted)


def _signature(fn: Callable[..., Any]) -> inspect.Signature | None:
    """The call signature of *fn*, or None when Python cannot tell it."""
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):
        return None
