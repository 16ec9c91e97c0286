"""Router addresses: what the routers bind and which address a peer should connect to.

Pure functions over ``BusSettings`` plus two small checks against the file system and the
network stack (a stale ipc file, a loopback host); no ZeroMQ here.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .errors import BusError
from .settings import BusSettings

Role = Literal["rpc_frontend", "rpc_backend", "publish", "subscribe"]
ROLES: tuple[Role, ...] = ("rpc_frontend", "rpc_backend", "publish", "subscribe")

#: Which setting holds each role's tcp port (named in error messages).
PORT_SETTING: dict[Role, str] = {
    "rpc_frontend": "rpc_frontend_port",
    "rpc_backend": "rpc_backend_port",
    "publish": "sub_port",
    "subscribe": "pub_port",
}


@dataclass(frozen=True)
class Endpoints:
    """The four connect addresses of one middleware over one transport.

    ``publish`` is where publishers connect (the router's XSUB side) and ``subscribe`` is
    where subscribers connect (the XPUB side).
    """

    rpc_frontend: str
    rpc_backend: str
    publish: str
    subscribe: str

    def get(self, role: Role) -> str:
        """The address for *role*."""
        return getattr(self, role)


def inproc_address(bus: BusSettings, role: Role) -> str:
    """The inproc address of *role* (only reachable inside the middleware's process)."""
    return f"inproc://aitrados-{bus.name}-{role}"


def ipc_path(bus: BusSettings, role: Role) -> Path:
    """The ipc socket file of *role*."""
    return Path(bus.ipc_dir) / f"{bus.name}-{role}.sock"


def tcp_address(bus: BusSettings, role: Role, port: int | None = None) -> str:
    """The tcp address of *role*; *port* overrides the configured one (e.g. the bound port)."""
    p = getattr(bus, PORT_SETTING[role]) if port is None else port
    host = f"[{bus.host}]" if ":" in bus.host else bus.host
    return f"tcp://{host}:{p}"


def is_loopback(host: str) -> bool:
    """True if *host* is a loopback address or ``localhost``."""
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def endpoints_for(bus: BusSettings, transport: str = "auto", *, in_process: bool = False,
                  tcp_ports: dict[Role, int] | None = None) -> Endpoints:
    """Connect addresses for a peer.

    ``auto`` picks inproc when *in_process* (same process as the middleware), ipc when ipc is
    enabled on this host, tcp otherwise; ``bus.transport`` overrides ``auto``. *tcp_ports*
    replaces configured ports (used when the routers bound port 0).
    """
    if transport == "auto":
        transport = bus.transport
    if transport == "auto":
        transport = "inproc" if in_process else ("ipc" if bus.enable_ipc else "tcp")
    ports = tcp_ports or {}
    addrs: dict[str, str] = {}
    for role in ROLES:
        if transport == "inproc":
            addrs[role] = inproc_address(bus, role)
        elif transport == "ipc":
            addrs[role] = f"ipc://{ipc_path(bus, role)}"
        elif transport == "tcp":
            addrs[role] = tcp_address(bus, role, ports.get(role))
        else:
            raise ValueError(f"unknown transport {transport!r}: use auto, inproc, ipc or tcp (setting bus.transport)")
    return Endpoints(**addrs)


class AlreadyRunningError(BusError, RuntimeError):
    """A live middleware is already bound at an address this one needs."""


def clear_stale_ipc(path: Path) -> bool:
    """Remove *path* if it is an ipc socket file left by a crashed run.

    Returns True if a stale file was removed, False if there was none.
    Raises ``AlreadyRunningError`` if a live process accepts connections on it.
    """
    if not path.exists():
        return False
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except OSError as exc:
        if exc.errno in (errno.ECONNREFUSED, errno.ENOENT, errno.ENOTSOCK):
            path.unlink(missing_ok=True)
            return True
        raise
    else:
        raise AlreadyRunningError(
            f"a middleware is already running at ipc://{path}; stop it first, or give this one "
            f"another name (AITRADOS_BUS__NAME) or folder (AITRADOS_BUS__IPC_DIR)"
        )
    finally:
        probe.close()


def ensure_ipc_dir(bus: BusSettings) -> Path:
    """Create the ipc folder (mode 0700: only this user may connect) and return it."""
    d = Path(bus.ipc_dir)
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        os.chmod(d, 0o700)
    except PermissionError:
        pass
    return d
