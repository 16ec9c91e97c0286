"""Multipart sends and receives on the RPC hot path, without pyzmq's per-frame Python overhead.

pyzmq's ``send_multipart`` builds an ``IntFlag`` (``SNDMORE | flags``) and type-checks every frame
on each call, and ``recv_multipart`` asks ``getsockopt(RCVMORE)`` through the enum layer after each
frame; measured on this project's 2-core machine that is 3-5x the cost of the libzmq calls
themselves (docs/performance.md). The helpers here do the same work with plain ``int`` flags and
``Frame.more``; their semantics are exactly pyzmq's: a multipart message is all-or-nothing, a
non-blocking send that cannot be queued raises ``zmq.Again`` on its first frame, and a send to an
unknown ROUTER peer (``router_mandatory``) raises ``EHOSTUNREACH``.
"""

from __future__ import annotations

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


def send_frames(sock: zmq.Socket, frames: Sequence[bytes], flags: int = 0) -> None:
    """Send *frames* as one multipart message with *flags* (e.g. ``NOBLOCK``) on a plain (not asyncio)
    socket; returns nothing.

    Raises what ``Socket.send`` raises for the first frame (``zmq.Again`` when a non-blocking send
    cannot be queued); the remaining frames of a message whose first frame was queued always go.
    """
    send = _Base.send  # libzmq's send itself, past the pure-Python wrapper (it only adds DRAFT options)
    more = SNDMORE | flags
    last = len(frames) - 1
    for i in range(last):
        send(sock, frames[i], more)
    send(sock, frames[last], flags)


def recv_frames(sock: zmq.Socket, flags: int = 0) -> list[bytes]:
    """Receive one whole multipart message as a list of bytes (``flags=NOBLOCK``: raise ``zmq.Again``
    when none is waiting)."""
    recv = sock.recv
    frame = recv(flags, copy=False)
    parts = [frame.bytes]
    while frame.more:
        frame = recv(flags, copy=False)
        parts.append(frame.bytes)
    return parts


def readable(sock: zmq.Socket) -> bool:
    """True when a whole message is waiting on *sock* (a cheap check that ends a drain loop
    without the cost of a ``zmq.Again`` exception).

    ``zmq_poll`` with a zero timeout asks libzmq the same ``ZMQ_EVENTS`` question in C; pyzmq's
    ``getsockopt(EVENTS)`` builds two enum members per call (the option and the result).
    """
    return bool(zmq_poll([(sock, POLLIN)], 0))


def drain(sock: zmq.Socket, handle: Callable[[list[bytes]], object], limit: int, *, waiting: bool = False) -> int:
    """Receive whole messages waiting on *sock* without blocking and pass each to *handle*, at most
    *limit*; returns how many were handled (*limit*: more may still wait).

    *waiting*: a message is known to wait (``zmq_poll`` just said so), so the first is received
    without asking. After the first message one ``ZMQ_EVENTS`` check tells whether more wait; when
    they do (a burst, e.g. pipelined calls) the rest are received until ``zmq.Again``: one exception
    per burst instead of one check per message. Either way the socket is left as a ``ZMQ_EVENTS``
    check leaves it, so a descriptor watched by an event loop signals the next arrival; except with
    *limit* 1, which checks nothing after the message (for a caller that polls again right away).
    """
    if not waiting and not readable(sock):
        return 0
    handle(recv_frames(sock, NOBLOCK))
    if limit <= 1 or not readable(sock):
        return 1
    n = 1
    while n < limit:
        try:
            frames = recv_frames(sock, NOBLOCK)
        except zmq.Again:
            break
        handle(frames)
        n += 1
    return n
