"""RPC clients: call a method of a named service with keyword arguments and a timeout.

Both clients stamp each request with a correlation id, so replies may arrive out of order
and a reply that arrives after its call timed out is dropped; the client stays usable.

A client given a ``token`` sends it with every request (``auth``), proving the operator or
service role to methods that need one. ``call(..., idempotent=True)`` retries a call that
failed with ``ServiceUnavailable`` or ``Busy`` (the request never ran, or running it twice
does no harm) until its timeout.
"""

from __future__ import annotations

import asyncio
import itertools
import struct
import threading
import time
from typing import Any

import zmq
import zmq.asyncio

from .settings import BusSettings
from . import protocol as P
from .errors import BusyError, RPCTimeoutError, ServiceUnavailableError, remote_error

_MORE = int(zmq.SNDMORE)
_NOBLOCK = int(zmq.NOBLOCK)
_pack_id = struct.Struct(">Q").pack
#: Errors after which an idempotent call is sent again.
RETRYABLE = (ServiceUnavailableError, BusyError)


def _raise_error(name: bytes, body: bytes) -> None:
    try:
        err = P.decode(body)
        raise remote_error(str(err.get("type", "Error")), str(err.get("message", "")), err.get("traceback"))
    except P.DecodeError:
        raise remote_error("BadReply", f"undecodable error reply from service {name.decode(errors='replace')!r}") from None


def _dealer(sock: zmq.Socket, address: str, bus: BusSettings | None) -> None:
    sock.linger = 0
    sock.immediate = True  # never queue requests for a router that is not connected
    sock.sndhwm = sock.rcvhwm = bus.hwm if bus else 100_000
    if bus is not None:
        from .security import apply_client

        apply_client(sock, bus, address)
    sock.connect(address)


class RPCClient:
    """Synchronous RPC client (thread-safe: calls from several threads are serialised).

    :param address: the router's frontend address (``Endpoints.rpc_frontend``)
    :param bus: bus settings (default timeout, CURVE keys); optional
    :param context: ZeroMQ context; the process-wide one by default (needed for inproc)
    :param timeout: default timeout of a call in seconds
    :param token: sent with every request to prove a role (see :mod:`aitrados.bus.tokens`)
    """

    def __init__(self, address: str, *, bus: BusSettings | None = None, context: zmq.Context | None = None,
                 timeout: float | None = None, token: str | None = None) -> None:
        self.address = address
        self.timeout = timeout or (bus.rpc_timeout if bus else 10.0)
        self.token = token
        self._sock = (context or zmq.Context.instance()).socket(zmq.DEALER)
        _dealer(self._sock, address, bus)
        self._ids = itertools.count(1)
        self._names: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def call(self, service: str, method: str, timeout: float | None = None, *, idempotent: bool = False,
             **params: Any) -> Any:
        """Call *method* of *service* with *params*; returns its result.

        Raises ``RPCTimeoutError`` after *timeout* seconds and a ``RemoteError`` subclass
        for an error reply. With *idempotent*, ``ServiceUnavailable`` and ``Busy`` are retried
        (with a short growing pause) until the timeout.
        """
        name = self._names.get(service) or self._names.setdefault(service, service.encode("utf-8"))
        body = P.request_body(method, params, self.token)
        if not idempotent:
            return self.call_raw(name, body, timeout)
        t = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + t
        pause = 0.02
        while True:
            try:
                return self.call_raw(name, body, max(0.001, deadline - time.monotonic()))
            except RETRYABLE:
                if time.monotonic() + pause >= deadline:
                    raise
                time.sleep(pause)
                pause = min(0.5, pause * 2)

    def call_raw(self, name: bytes, body: bytes, timeout: float | None = None) -> Any:
        """Send an already encoded request body to service *name*; returns the decoded result."""
        t = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + t
        rid = _pack_id(next(self._ids))
        sock = self._sock
        with self._lock:
            try:
                sock.send(P.CLIENT_TAG, _MORE | _NOBLOCK)
            except zmq.Again:
                if not sock.poll(t * 1000, zmq.POLLOUT):
                    raise RPCTimeoutError(f"cannot reach the RPC router at {self.address} within {t:g}s; "
                                          "is the middleware running (`aitrados run`)?") from None
                sock.send(P.CLIENT_TAG, _MORE)
            sock.send(P.REQUEST, _MORE)
            sock.send(name, _MORE)
            sock.send(rid, _MORE)
            sock.send(body)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not sock.poll(remaining * 1000):
                    raise RPCTimeoutError(
                        f"no reply from service {name.decode(errors='replace')!r} within {t:g}s")
                frames = sock.recv_multipart()
                if len(frames) != 5 or frames[0] != P.CLIENT_TAG or frames[3] != rid:
                    continue  # a late reply to a call that timed out, or noise
                if frames[1] == P.REPLY:
                    return P.decode(frames[4])
                _raise_error(name, frames[4])

    def close(self) -> None:
        """Close the socket."""
        self._sock.close(0)

    def __enter__(self) -> RPCClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncRPCClient:
    """Asyncio RPC client: many calls may be outstanding at once on one socket.

    A reader task matches replies to calls by correlation id; after one awaited wake-up it
    drains every waiting reply without blocking.
    """

    def __init__(self, address: str, *, bus: BusSettings | None = None, context: zmq.Context | None = None,
                 timeout: float | None = None, token: str | None = None) -> None:
        self.address = address
        self.timeout = timeout or (bus.rpc_timeout if bus else 10.0)
        self.token = token
        ctx = zmq.asyncio.Context.shadow(context or zmq.Context.instance())
        self._sock = ctx.socket(zmq.DEALER)
        _dealer(self._sock, address, bus)
        self._sync = zmq.Socket.shadow(self._sock.underlying)
        self._ids = itertools.count(1)
        self._names: dict[str, bytes] = {}
        self._pending: dict[bytes, asyncio.Future[Any]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def call(self, service: str, method: str, timeout: float | None = None, **params: Any) -> Any:
        """Call *method* of *service* with *params*; returns its result (see ``RPCClient.call``)."""
        name = self._names.get(service) or self._names.setdefault(service, service.encode("utf-8"))
        t = self.timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        if self._reader is None or self._reader.done():
            self._reader = loop.create_task(self._read())
        rid = _pack_id(next(self._ids))
        fut: asyncio.Future[Any] = loop.create_future()
        self._pending[rid] = fut
        frames = [P.CLIENT_TAG, P.REQUEST, name, rid, P.request_body(method, params, self.token)]
        try:
            self._sync.send_multipart(frames, _NOBLOCK)
            self._kick()
        except zmq.Again:
            try:
                await asyncio.wait_for(self._sock.send_multipart(frames), t)
            except asyncio.TimeoutError:
                self._pending.pop(rid, None)
                raise RPCTimeoutError(f"cannot reach the RPC router at {self.address} within {t:g}s; "
                                      "is the middleware running (`aitrados run`)?") from None
        timer = loop.call_later(t, self._expire, rid, name, t)
        try:
            return await fut
        finally:
            timer.cancel()
            self._pending.pop(rid, None)

    def _kick(self) -> None:
        # A send through the shadow socket can consume the edge-triggered readiness signal
        # the reader's pending recv waits for. Reading EVENTS through the zmq.asyncio socket is
        # its public way to re-check them: it schedules the pending recv when a message waits.
        self._sock.get(zmq.EVENTS)

    def _expire(self, rid: bytes, name: bytes, t: float) -> None:
        fut = self._pending.pop(rid, None)
        if fut is not None and not fut.done():
            fut.set_exception(RPCTimeoutError(f"no reply from service {name.decode(errors='replace')!r} within {t:g}s"))

    async def _read(self) -> None:
        pending = self._pending
        recv = self._sync.recv_multipart
        while True:
            frames = await self._sock.recv_multipart()
            while True:
                if len(frames) == 5 and frames[0] == P.CLIENT_TAG:
                    fut = pending.pop(frames[3], None)
                    if fut is not None and not fut.done():
                        if frames[1] == P.REPLY:
                            try:
                                fut.set_result(P.decode(frames[4]))
                            except P.DecodeError as exc:
                                fut.set_exception(remote_error("BadReply", str(exc)))
                        else:
                            try:
                                _raise_error(frames[2], frames[4])
                            except Exception as exc:
                                fut.set_exception(exc)
                try:
                    frames = recv(_NOBLOCK)
                except zmq.Again:
                    break

    def close(self) -> None:
        """Cancel the reader and close the socket."""
        if self._reader is not None:
            self._reader.cancel()
        self._sock.close(0)
