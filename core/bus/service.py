"""Services: a class whose public methods become RPC methods, and the worker that serves it.

A ``ServiceWorker`` connects a DEALER to the router's backend, announces the service with
READY, answers requests, and exchanges heartbeats with the router. Coroutine methods run
concurrently as tasks; plain methods run inline (fast) unless marked
``@rpc_method(blocking=True)``, which runs them in a thread pool so a slow call never
holds up the others. When the router goes silent the worker reconnects and registers again.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import socket as _socket
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any, ClassVar

import zmq
import zmq.asyncio
from loguru import logger

from ..settings import BusSettings
from . import protocol as P

_MORE = int(zmq.SNDMORE)
_NOBLOCK = int(zmq.NOBLOCK)


def rpc_method(fn: Callable[..., Any] | None = None, *, name: str | None = None,
               blocking: bool = False) -> Any:
    """Mark a method's RPC options: another wire *name*, or *blocking* (run in a thread pool)."""

    def mark(f: Callable[..., Any]) -> Callable[..., Any]:
        f.__aitrados_rpc__ = {"name": name or f.__name__, "blocking": blocking}  # type: ignore[attr-defined]
        return f

    return mark(fn) if fn is not None else mark


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
    """

    def __init__(self, service: Service, address: str, *, bus: BusSettings | None = None,
                 context: zmq.Context | None = None, include_traceback: bool = True) -> None:
        if not service.name:
            raise ValueError(f"{type(service).__name__} has no `name`; set the class attribute `name = '...'`")
        self.service = service
        self.address = address
        self.bus = bus or BusSettings()
        self.context = context or zmq.Context.instance()
        self.include_traceback = include_traceback
        self.methods = service.rpc_methods()
        self._name = service.name.encode("utf-8")
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self.failure: BaseException | None = None
        self.served = 0

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
        try:
            asyncio.run(self.run())
        except BaseException as exc:
            self.failure = exc
            self._ready.set()
            logger.exception("service worker {!r} died: {}", self.service.name, exc)

    def stop(self, timeout: float = 5.0) -> None:
        """Say goodbye to the router and stop (thread mode or from another thread)."""
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
    def _connect(self, actx: zmq.asyncio.Context) -> zmq.asyncio.Socket:
        sock = actx.socket(zmq.DEALER)
        sock.linger = 0
        sock.sndhwm = sock.rcvhwm = self.bus.hwm
        from .security import apply_client

        apply_client(sock, self.bus, self.address)
        sock.connect(self.address)
        sock.send_multipart([P.WORKER_TAG, P.READY, self._name, P.encode(self._info())])
        return sock

    async def run(self) -> None:
        """Serve until ``stop()``; reconnects when the router stops answering heartbeats."""
        loop = self._loop = asyncio.get_running_loop()
        me = asyncio.current_task()
        assert me is not None
        self._stopping_cb = lambda: me.cancel()
        actx = zmq.asyncio.Context.shadow(self.context)
        self._asock = self._connect(actx)
        self._sync = zmq.Socket.shadow(self._asock.underlying)
        self._last_router = time.monotonic()
        self._recv_fut: asyncio.Future[list[bytes]] | None = None
        self._reconnect = False
        hb = loop.create_task(self._heartbeats())
        self._ready.set()
        try:
            while True:
                fut = self._recv_fut = self._asock.recv_multipart()
                try:
                    frames = await fut
                except asyncio.CancelledError:
                    if me.cancelling() or not self._reconnect:
                        raise
                    self._reconnect = False
                    self._asock.close(0)
                    self._asock = self._connect(actx)
                    self._sync = zmq.Socket.shadow(self._asock.underlying)
                    self._last_router = time.monotonic()
                    continue
                self._last_router = time.monotonic()
                self._handle(frames)
                self._drain()
        except asyncio.CancelledError:
            pass
        finally:
            hb.cancel()
            for t in list(self._tasks):
                t.cancel()
            try:
                self._sync.send_multipart([P.WORKER_TAG, P.DISCONNECT], _NOBLOCK)
            except zmq.ZMQError:
                pass
            self._asock.close(linger=100)

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
                self._reconnect = True
                if self._recv_fut is not None:
                    self._recv_fut.cancel()
                self._last_router = time.monotonic()
            else:
                try:
                    self._sync.send_multipart([P.WORKER_TAG, P.HEARTBEAT], _NOBLOCK)
                except zmq.ZMQError:
                    pass

    def _drain(self) -> None:
        recv = self._sync.recv_multipart
        while True:
            try:
                frames = recv(_NOBLOCK)
            except zmq.Again:
                return
            self._handle(frames)

    def _handle(self, frames: list[bytes]) -> None:
        if len(frames) < 2 or frames[0] != P.WORKER_TAG:
            logger.debug("service {!r} ignored a malformed message from the router", self.service.name)
            return
        cmd = frames[1]
        if cmd == P.REQUEST and len(frames) == 5:
            self._dispatch(frames[2], frames[3], frames[4])
        elif cmd == P.DISCONNECT:
            logger.info("router asked service {!r} to register again", self.service.name)
            self._sync.send_multipart([P.WORKER_TAG, P.READY, self._name, P.encode(self._info())])

    def _info(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "host": _socket.gethostname(), "methods": sorted(self.methods)}

    # ---------------------------------------------------------------- requests
    def _send(self, cmd: bytes, client: bytes, rid: bytes, body: bytes) -> None:
        s = self._sync
        s.send(P.WORKER_TAG, _MORE)
        s.send(cmd, _MORE)
        s.send(client, _MORE)
        s.send(rid, _MORE)
        s.send(body)
        self.served += 1
        if self._recv_fut is not None and not self._recv_fut.done():
            # A send through the shadow socket can consume the edge-triggered readiness signal
            # the pending recv waits for; ask zmq.asyncio to re-check the socket's events.
            kick = getattr(self._asock, "_schedule_remaining_events", None)
            if kick is not None:
                kick()

    def _error(self, client: bytes, rid: bytes, exc: BaseException, type_: str | None = None) -> None:
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

    def _dispatch(self, client: bytes, rid: bytes, body: bytes) -> None:
        try:
            req = P.decode(body)
            method = req["method"]
            params = req.get("params") or {}
            if not isinstance(params, dict):
                raise TypeError("params must be a map")
        except Exception as exc:
            self._error(client, rid, exc, "BadRequest")
            return
        entry = self.methods.get(method)
        if entry is None:
            self._send(P.ERROR, client, rid, P.error_body(
                "MethodNotFound",
                f"service {self.service.name!r} has no method {method!r}; methods: {', '.join(sorted(self.methods))}"))
            return
        fn, kind = entry
        if kind == "inline":
            try:
                result = fn(**params)
            except Exception as exc:
                self._error(client, rid, exc)
                return
            self._result(client, rid, method, result)
            return
        task = asyncio.ensure_future(self._run_task(fn, kind, params, client, rid, method))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_task(self, fn: Callable[..., Any], kind: str, params: dict[str, Any],
                        client: bytes, rid: bytes, method: str) -> None:
        try:
            if kind == "async":
                result = await fn(**params)
            else:
                result = await asyncio.get_running_loop().run_in_executor(None, lambda: fn(**params))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._error(client, rid, exc)
            return
        self._result(client, rid, method, result)
