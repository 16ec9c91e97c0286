"""Binding router sockets with errors that say what to change."""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import zmq

from .addresses import PORT_SETTING, AlreadyRunningError, Role, clear_stale_ipc
from .errors import BusError

if TYPE_CHECKING:
    from .settings import BusSettings


def router_socket(ctx: zmq.Context, kind: int, bus: "BusSettings", secure: Callable[[zmq.Socket], None] | None) -> zmq.Socket:
    """A router-side socket with the bus limits set on purpose: no linger, high-water marks,
    ``ZMQ_MAXMSGSIZE``, and CURVE when *secure* is given."""
    s = ctx.socket(kind)
    s.linger = 0
    s.sndhwm = bus.hwm
    s.rcvhwm = bus.hwm
    s.maxmsgsize = bus.max_message_size
    if secure:
        secure(s)
    return s


class BindError(BusError, RuntimeError):
    """A router could not bind one of its addresses."""


def bind_all(sock: zmq.Socket, addresses: list[str], role: Role, bound: list[str] | None = None) -> list[str]:
    """Bind *sock* to every address; returns the bound addresses (tcp port 0 resolved).

    Each success is appended to *bound* as it happens, so a caller can undo a partial bind.

    A stale ipc file is removed first; a live peer on it raises ``AlreadyRunningError``;
    a tcp port in use raises ``BindError`` naming the port and the setting that changes it.
    """
    bound = [] if bound is None else bound
    for addr in addresses:
        if addr.startswith("ipc://"):
            clear_stale_ipc(Path(addr[len("ipc://"):]))
        try:
            sock.bind(addr)
        except zmq.ZMQError as exc:
            if exc.errno == errno.EADDRINUSE:
                if addr.startswith("tcp://"):
                    setting = PORT_SETTING[role]
                    raise BindError(
                        f"tcp port {addr.rsplit(':', 1)[1]} ({role}) is already in use "
                        f"(is a middleware already running?); choose another port with "
                        f"AITRADOS_BUS__{setting.upper()} (setting bus.{setting}), or 0 for any free port"
                    ) from None
                raise AlreadyRunningError(
                    f"a middleware is already running at {addr}; stop it or set AITRADOS_BUS__NAME"
                ) from None
            raise BindError(f"cannot bind {addr} ({role}): {exc}") from None
        bound.append(sock.last_endpoint.decode() if addr.startswith("tcp://") else addr)
    return bound


def unbind_inproc(sock: zmq.Socket, addrs: list[str]) -> None:
    """Unbind *sock*'s inproc names among *addrs* before it is closed; returns nothing.

    Unbinding an inproc name is synchronous, while ``close()`` leaves the teardown (and the name)
    to libzmq's reaper until every peer pipe has ended: a middleware started right after this one
    in the same process could otherwise find its names still taken. Names that are not bound are
    skipped.
    """
    for addr in addrs:
        if addr.startswith("inproc://"):
            try:
                sock.unbind(addr)
            except zmq.ZMQError:
                pass  # not bound
