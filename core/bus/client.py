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
import heapq
import itertools
import struct
import threading
import time
from typing import Any

import zmq

from .settings import BusSettings
from . import protocol as P
from .errors import BusyError, RPCTimeoutError, ServiceUnavailableError, remote_error
from .fastio import NOBLOCK as _NOBLOCK
from .fastio import drain, recv_frames, send_frames
_pack_id = struct.Struct(">Q").pack
#: Replies an ``AsyncRPCClient`` handles per event-loop pass before letting other work run.
_DRAIN_LIMIT = 200
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
        #: The socket's receive timeout in ms (libzmq's default -1: none), set only when a call needs another one
        self._rcvtimeo = -1
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
            frames = (P.CLIENT_TAG, P.REQUEST, name, rid, body)
            try:
                send_frames(sock, frames, _NOBLOCK)
            except zmq.Again:  # not connected yet (``immediate``): wait for the router up to the timeout
                if not sock.poll(t * 1000, zmq.POLLOUT):
                    raise RPCTimeoutError(f"cannot reach the RPC router at {self.address} within {t:g}s; "
                                          "is the middleware running (`aitrados run`)?") from None
                send_frames(sock, frames)
            while True:
                # a blocking receive bounded by the socket's timeout: one libzmq call, as a plain pyzmq client
                # waits (a zmq_poll first costs a second one); the option is set only when it changes by > 5 ms
                remaining = deadline - time.monotonic()
                ms = int(remaining * 1000) + 1
                if remaining > 0 and not ms <= self._rcvtimeo <= ms + 5:
                    sock.rcvtimeo = self._rcvtimeo = ms
                try:
                    frames = recv_frames(sock) if remaining > 0 else None
                except zmq.Again:
                    frames = None
                if frames is None:
                    raise RPCTimeoutError(f"no reply from service {name.decode(errors='replace')!r} within {t:g}s")
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

    The socket is a plain DEALER watched with ``loop.add_reader`` on its descriptor; each wake-up
    matches every waiting reply to its call by correlation id without blocking (at most
    ``_DRAIN_LIMIT`` per loop pass). Call deadlines sit in one heap swept by a single timer, so a
    call costs no timer of its own.
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
        self._pending: dict[bytes, asyncio.Future[Any]] = {}
        #: (deadline on the loop's clock, request id, service name, timeout) of calls sent, earliest first
        self._deadlines: list[tuple[float, bytes, bytes, float]] = []
        self._sweep: asyncio.TimerHandle | None = None
        self._sweep_at = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_scheduled = False

    async def call(self, service: str, method: str, timeout: float | None = None, **params: Any) -> Any:
        """Call *method* of *service* with *params*; returns its result (see ``RPCClient.call``)."""
        name = self._names.get(service) or self._names.setdefault(service, service.encode("utf-8"))
        t = self.timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._watch(loop)
        rid = _pack_id(next(self._ids))
        fut: asyncio.Future[Any] = loop.create_future()
        self._pending[rid] = fut
        frames = (P.CLIENT_TAG, P.REQUEST, name, rid, P.request_body(method, params, self.token))
        try:
            try:
                send_frames(self._sock, frames, _NOBLOCK)
            except zmq.Again:  # not connected yet (``immediate``): retry until the timeout
                await self._send_when_connected(frames, loop.time() + t, t)
            self._recheck()
            deadline = loop.time() + t
            heapq.heappush(self._deadlines, (deadline, rid, name, t))
            if self._sweep is None or deadline < self._sweep_at:
                self._arm(deadline)
            return await fut
        finally:
            self._pending.pop(rid, None)

    async def _send_when_connected(self, frames: tuple[bytes, ...], deadline: float, t: float) -> None:
        """Send *frames* once the router accepts them, or raise ``RPCTimeoutError`` at *deadline*."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(0.005)
            try:
                send_frames(self._sock, frames, _NOBLOCK)
                return
            except zmq.Again:
                if loop.time() >= deadline:
                    raise RPCTimeoutError(f"cannot reach the RPC router at {self.address} within {t:g}s; "
                                          "is the middleware running (`aitrados run`)?") from None

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Watch the socket's descriptor on *loop* (the first call, or a call from a new event loop)."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._sock.FD)
        self._loop = loop
        if self._sweep is not None:  # the old loop's timer; the deadlines stay in the heap for the new one
            self._sweep.cancel()
            self._sweep = None
        self._drain_scheduled = False
        loop.add_reader(self._sock.FD, self._on_readable)

    def _arm(self, deadline: float) -> None:
        assert self._loop is not None
        if self._sweep is not None:
            self._sweep.cancel()
        self._sweep_at = deadline
        self._sweep = self._loop.call_at(deadline, self._expire_due)

    def _expire_due(self) -> None:
        """Fail the calls whose deadline passed with ``RPCTimeoutError``; re-arm for the next one."""
        self._sweep = None
        assert self._loop is not None
        now = self._loop.time()
        heap, pending = self._deadlines, self._pending
        while heap and heap[0][0] <= now:
            _, rid, name, t = heapq.heappop(heap)
            fut = pending.pop(rid, None)
            if fut is not None and not fut.done():
                fut.set_exception(RPCTimeoutError(f"no reply from service {name.decode(errors='replace')!r} within {t:g}s"))
        if len(heap) > 2 * len(pending) + 1024:  # answered calls' entries: drop them now and then
            heap[:] = [e for e in heap if e[1] in pending]
            heapq.heapify(heap)
        if heap:
            self._arm(heap[0][0])

    def _recheck(self) -> None:
        """Call after a send: it can consume the edge of the descriptor's readiness signal while a reply
        waits; schedules one ``_on_readable`` pass."""
        if not self._drain_scheduled and self._loop is not None:
            self._drain_scheduled = True
            self._loop.call_soon(self._on_readable)

    def _on_readable(self) -> None:
        """Resolve the calls of every waiting reply (at most ``_DRAIN_LIMIT``, then again on the next pass)."""
        self._drain_scheduled = False
        if self._sock.closed:
            return
        if drain(self._sock, self._on_reply, _DRAIN_LIMIT) == _DRAIN_LIMIT:
            self._recheck()

    def _on_reply(self, frames: list[bytes]) -> None:
        """Resolve the call a reply answers (a reply to no waiting call is dropped)."""
        if len(frames) == 5 and frames[0] == P.CLIENT_TAG:
            fut = self._pending.pop(frames[3], None)
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

    def close(self) -> None:
        """Stop watching the socket and close it."""
        if self._loop is not None and not self._loop.is_closed() and not self._sock.closed:
            self._loop.remove_reader(self._sock.FD)
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        self._sock.close(0)
