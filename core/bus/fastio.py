"""Multipart sends and receives on the RPC hot path, without pyzmq's per-frame Python overhead.

pyzmq's ``send_multipart`` builds an ``IntFlag`` (``SNDMORE | flags``) and type-checks every frame
on each call, and ``recv_multipart`` asks ``getsockopt(RCVMORE)`` through the enum layer after each
frame; measured on this project's 2-core machine that is 3-5x the cost of the libzmq calls
themselves (docs/performance.md). The helpers here do the same work with plain ``int`` flags and
``Frame.more``; their semantics are exactly pyzmq's: a multipart message is all-or-nothing, a
non-blocking send that cannot be queued raises ``zmq.Again`` on its first frame, and a send to an
unknown ROUTER peer (``router_mandatory``) raises ``EHOSTUNREACH``.

Where the C extension ``_fastzmq`` is built (``pip install`` compiles it with gcc; it is optional,
so an install without a compiler still works) the same functions run in one C call per message
(``NATIVE`` is True): the libzmq calls pyzmq would make, without its per-frame Python layer.
``AITRADOS_PURE_PYTHON=1`` in the environment keeps the pure-Python versions (for comparison and
for debugging); both have the same semantics and the tests run both.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import zmq
from zmq.backend import Socket as _Base
from zmq.backend import zmq_poll

#: The flags and poll events as plain ints (pyzmq's constants are ``IntFlag`` objects whose
#: ``|`` and ``&`` build a new enum member on every call).
NOBLOCK: int = int(zmq.NOBLOCK)
SNDMORE: int = int(zmq.SNDMORE)
POLLIN: int = int(zmq.POLLIN)
POLLOUT: int = int(zmq.POLLOUT)
EVENTS: int = int(zmq.EVENTS)
#: Bytes a drain copies out of a socket at most before its handlers run (then it goes on): bounds
#: what a flood of large messages (up to ``bus.max_message_size`` each) costs in memory at once.
DRAIN_BYTES: int = 16 * 1024 * 1024


def py_send_frames(sock: zmq.Socket, frames: Sequence[bytes], flags: int = 0) -> None:
    """Send *frames* as one multipart message with *flags* (e.g. ``NOBLOCK``) on a plain (not asyncio)
    socket; returns nothing.

    Raises what ``Socket.send`` raises for the first frame (``zmq.Again`` when a non-blocking send
    cannot be queued); the remaining frames of a message whose first frame was queued always go.
    A frame that is not bytes-like or not contiguous raises (``TypeError``, ``BufferError``) before
    any frame is sent: a message sent in part would stay open and take the next send's frames.
    """
    for frame in frames:
        if frame.__class__ is not bytes and not memoryview(frame).contiguous:
            raise BufferError("send_frames: a frame's buffer is not contiguous")
    send = _Base.send  # libzmq's send itself, past the pure-Python wrapper (it only adds DRAFT options)
    more = SNDMORE | flags
    last = len(frames) - 1
    for i in range(last):
        send(sock, frames[i], more)
    send(sock, frames[last], flags)


def py_send_many(sock: zmq.Socket, messages: Sequence[Sequence[bytes]]) -> int:
    """Send every message of *messages* (whole multipart messages of ``bytes`` frames) in order;
    returns how many were sent. The batch is checked whole first: a message with no frames
    (``ValueError``) or a frame that is not exactly ``bytes`` (``TypeError``) sends nothing. The C
    version sends with the GIL released for the whole batch (a publisher's held batch, say).
    A failing send raises and ends the batch."""
    batch = [tuple(m) for m in messages]
    for i, m in enumerate(batch):
        if not m:
            raise ValueError(f"send_many: message {i} has no frames")
        for j, f in enumerate(m):
            if f.__class__ is not bytes:
                raise TypeError(f"send_many: frame {j} of message {i} is {type(f).__name__}, not bytes")
    send = _Base.send
    for m in batch:
        last = len(m) - 1
        for i in range(last):
            send(sock, m[i], SNDMORE)
        send(sock, m[last], 0)
    return len(batch)


def py_recv_frames(sock: zmq.Socket, flags: int = 0) -> list[bytes]:
    """Receive one whole multipart message as a list of bytes (``flags=NOBLOCK``: raise ``zmq.Again``
    when none is waiting).

    An exception after the first frame (a ``MemoryError`` copying a large frame, or a signal
    handler's) drops the rest of the message before it propagates: the next receive gets the next
    whole message, not this one's tail."""
    recv = sock.recv
    frame = recv(flags, copy=False)
    try:
        parts = [frame.bytes]
        while frame.more:
            frame = recv(flags, copy=False)
            parts.append(frame.bytes)
    except BaseException:
        try:
            while frame.more:  # the message's frames are all queued: none of these waits
                frame = recv(NOBLOCK, copy=False)
        except zmq.ZMQError:
            pass
        raise
    return parts


def py_readable(sock: zmq.Socket) -> bool:
    """True when a whole message is waiting on *sock* (a cheap check that ends a drain loop
    without the cost of a ``zmq.Again`` exception).

    ``zmq_poll`` with a zero timeout asks libzmq the same ``ZMQ_EVENTS`` question in C; pyzmq's
    ``getsockopt(EVENTS)`` builds two enum members per call (the option and the result).
    A closed socket raises ``ZMQError(ENOTSOCK)`` as the C version does: pyzmq hands ``zmq_poll`` a
    closed socket's NULL handle, which polls file descriptor 0 (stdin) instead.
    """
    if sock.closed:
        raise zmq.ZMQError(zmq.ENOTSOCK)
    return bool(zmq_poll([(sock, POLLIN)], 0))


def py_recv_messages(sock: zmq.Socket, limit: int, keep: int = -1, max_bytes: int = -1) -> list[list[bytes]]:
    """Receive up to *limit* whole messages that are waiting on *sock*, without blocking; returns
    them (an empty list when none waits). With *keep* >= 0 each message's frames after the first
    *keep* come as ``b""`` (the C version does not copy them; the count of frames is kept). With
    *max_bytes* >= 0 no further message is received once the kept frames hold that many bytes (the
    rest stays queued: a flood of large messages is not copied out all at once)."""
    out: list[list[bytes]] = []
    size = 0
    while len(out) < limit and (max_bytes < 0 or size < max_bytes):
        try:
            frames = py_recv_frames(sock, NOBLOCK)
        except zmq.Again:
            break
        if 0 <= keep < len(frames):
            frames[keep:] = [b""] * (len(frames) - keep)
        if max_bytes >= 0:
            size += sum(map(len, frames))
        out.append(frames)
    return out


def py_drain(sock: zmq.Socket, handle: Callable[[list[bytes]], object], limit: int, *, waiting: bool = False) -> int:
    """Receive whole messages waiting on *sock* without blocking and pass each to *handle*, at most
    *limit*; returns how many were handled (*limit*: more may still wait).

    *waiting*: a message is known to wait (``zmq_poll`` just said so), so the first is received
    without asking. After the first message one ``ZMQ_EVENTS`` check tells whether more wait; when
    they do (a burst, e.g. pipelined calls) the rest are received until ``zmq.Again``: one exception
    per burst instead of one check per message. Either way the socket is left as a ``ZMQ_EVENTS``
    check leaves it, so a descriptor watched by an event loop signals the next arrival; except with
    *limit* 1, which checks nothing after the message (for a caller that polls again right away).
    """
    if not waiting and not py_readable(sock):
        return 0
    handle(py_recv_frames(sock, NOBLOCK))
    if limit <= 1 or not py_readable(sock):
        return 1
    n = 1
    while n < limit:
        try:
            frames = py_recv_frames(sock, NOBLOCK)
        except zmq.Again:
            break
        handle(frames)
        n += 1
    return n


def native_drain(sock: zmq.Socket, handle: Callable[[list[bytes]], object], limit: int, *,
                 waiting: bool = False) -> int:
    """``py_drain`` in C calls: the waiting messages are received in one call (which ends on
    ``EAGAIN`` without an exception) and then handed to *handle* in order; returns how many.

    After the handlers ran, one ``ZMQ_EVENTS`` check: a handler's send can take in libzmq's
    pending commands, consuming the descriptor's edge for a message that arrived meanwhile; the
    check re-arms it (and when something waits, the next batch is received). If *handle* raises,
    the exception propagates and the messages of this batch after the failing one are dropped (the
    pure-Python version leaves them queued); every caller's handler catches its own errors.
    """
    if not waiting and not readable(sock):
        return 0
    if limit <= 1:
        handle(recv_frames(sock, NOBLOCK))
        return 1
    n = 0
    while n < limit:
        msgs = recv_messages(sock, limit - n, -1, DRAIN_BYTES)
        for frames in msgs:
            handle(frames)
        n += len(msgs)
        if not msgs or not readable(sock):
            break
    return n


def _pyzmq_backend_path() -> str | None:
    """The file of pyzmq's compiled backend module (linked with the libzmq pyzmq uses), or None."""
    try:
        from zmq.backend.cython import _zmq

        return getattr(_zmq, "__file__", None)
    except ImportError:
        return None


def _load_native() -> object | None:
    """The C extension, initialised, or None when it is not built, cannot find libzmq, or
    ``AITRADOS_PURE_PYTHON`` is set."""
    if os.environ.get("AITRADOS_PURE_PYTHON", "") not in ("", "0"):
        return None
    try:
        from . import _fastzmq  # type: ignore[attr-defined]

        _fastzmq.init(_pyzmq_backend_path())
    except ImportError:
        return None
    return _fastzmq


_native = _load_native()
#: True when the C versions below are in use.
NATIVE: bool = _native is not None
if _native is not None:
    send_frames: Callable[..., None] = _native.send_frames  # type: ignore[attr-defined]
    send_many: Callable[..., int] = _native.send_many  # type: ignore[attr-defined]
    recv_frames: Callable[..., list[bytes]] = _native.recv_frames  # type: ignore[attr-defined]
    recv_messages: Callable[..., list[list[bytes]]] = _native.recv_messages  # type: ignore[attr-defined]
    readable: Callable[[zmq.Socket], bool] = _native.readable  # type: ignore[attr-defined]
    drain = native_drain
    #: A subscriber's sequence checks for a batch in C (see ``_fastzmq.track``); None without the extension.
    track: Callable[..., int] | None = _native.track  # type: ignore[attr-defined]
    #: The pub/sub monitor's drain in C (see ``_fastzmq.sample``); None without the extension.
    sample: Callable[..., tuple[int, dict[tuple[bytes, bytes], int], list[list[bytes]], int]] | None = \
        _native.sample  # type: ignore[attr-defined]
else:
    send_frames, recv_frames, recv_messages, readable = py_send_frames, py_recv_frames, py_recv_messages, py_readable
    send_many = py_send_many
    drain = py_drain
    track = sample = None
