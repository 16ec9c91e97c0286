"""libzmq forwarding for the gateway's pub/sub side: a steerable proxy per hop, run until its
control socket says ``TERMINATE``, and a peer that asks one for its counts or stops it.

Each proxy's control socket is a REP bound on inproc, so several peers (the bridge asking for
counts, ``stop()`` asking it to end) can talk to it from their own threads.
"""

from __future__ import annotations

import os
import struct
import sys
import threading
from collections.abc import Callable

import zmq

#: ``STATISTICS`` answers 8 little-endian uint64: frontend received (frames, bytes), frontend sent
#: (frames, bytes), backend received (frames, bytes), backend sent (frames, bytes).
_U64 = struct.Struct("<Q")


def serve_proxy(frontend: zmq.Socket, backend: zmq.Socket, capture: zmq.Socket | None, control: zmq.Socket,
                stopping: threading.Event, on_restart: Callable[[], None]) -> None:
    """Forward between *frontend* and *backend* in libzmq until ``TERMINATE`` arrives on *control*
    or the context ends; returns then.

    libzmq's proxy gives up with ``EAGAIN`` when a socket it was told is readable has nothing to
    read after all (an XSUB that filtered the message) or a send would block; the sockets are
    intact, so *on_restart* is called (to count it) and forwarding resumes. Any other error raises.
    """
    while not stopping.is_set():
        try:
            zmq.proxy_steerable(frontend, backend, capture, control)
            return
        except zmq.Again:
            on_restart()
        except zmq.ContextTerminated:
            return


def lower_priority(by: int) -> bool:
    """Lower the calling thread's CPU priority by *by* nice steps (Linux, where a thread has its own
    nice value); returns False elsewhere or when refused, and the thread runs on as it was."""
    if by <= 0 or not sys.platform.startswith("linux"):
        return False
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + by))
        return True
    except OSError:
        return False


class ProxyControl:
    """One thread's peer of a proxy's REP control socket.

    :param ctx: the context the proxy's sockets live in (inproc)
    :param address: the control socket's inproc address
    :param timeout: seconds one request waits for its answer
    """

    def __init__(self, ctx: zmq.Context, address: str, timeout: float = 1.0) -> None:
        self._sock = ctx.socket(zmq.REQ)
        self._sock.linger = 0
        self._sock.rcvtimeo = self._sock.sndtimeo = int(timeout * 1000)
        # a request that timed out (the proxy ended) must not wedge the next one
        self._sock.setsockopt(zmq.REQ_RELAXED, 1)
        self._sock.setsockopt(zmq.REQ_CORRELATE, 1)
        self._sock.connect(address)

    def statistics(self) -> tuple[int, ...] | None:
        """The proxy's 8 counts (see ``_U64``), or None when it does not answer in time."""
        try:
            self._sock.send(b"STATISTICS")
            frames = self._sock.recv_multipart()
        except zmq.ZMQError:
            return None
        if len(frames) != 8 or any(len(f) != _U64.size for f in frames):
            return None
        return tuple(_U64.unpack(f)[0] for f in frames)

    def terminate(self) -> bool:
        """Ask the proxy to return; True when it acknowledged."""
        try:
            self._sock.send(b"TERMINATE")
            self._sock.recv()
            return True
        except zmq.ZMQError:
            return False

    def close(self) -> None:
        """Close the peer socket."""
        self._sock.close(0)


class CaptureLoss:
    """Frames a bounded capture queue dropped, from the proxy's own count of frames it received.

    The proxy copies every frame it receives on its frontend to the capture (counting it first),
    and the capture drops whole messages when its queue is full. The reader calls :meth:`read` for
    each message it takes and :meth:`settle` with the proxy's count once it has emptied the queue
    after reading that count: the difference is then the frames dropped, never more (frames sent
    after the count only make it smaller), and exact when traffic pauses.
    """

    def __init__(self) -> None:
        self.captured = 0  # frames read since the proxy's count began
        self._lost = 0  # most frames found missing since then
        self._before = 0  # frames found missing before the proxy last restarted
        self._last = 0

    def read(self, frames: int) -> None:
        """Count one captured message of *frames* frames."""
        self.captured += frames

    def settle(self, received: int) -> int:
        """The frames lost so far, given the proxy's received-frames count *received*."""
        if received < self._last:  # the proxy restarted and began counting again
            self._before += self._lost
            self._lost = 0
            self.captured = received  # what it dropped since the restart is not known: none assumed
        self._last = received
        self._lost = max(self._lost, received - self.captured)
        return self._before + self._lost
