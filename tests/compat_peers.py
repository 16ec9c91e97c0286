"""Helpers for the compat tests: point the official aitrados-api client classes at a gateway.

The official client reads its router addresses from class attributes (its configuration); the
tests set them to free ports so they never touch the machine's real 51591-51594.
"""

from __future__ import annotations

import socket
import time
from typing import Any


def free_ports(n: int) -> list[int]:
    """*n* distinct free tcp ports on 127.0.0.1."""
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def point_official_clients(ports: list[int], ipc_dir: str) -> dict[str, object]:
    """Aim the official clients at a gateway on *ports* (frontend, backend, sub, pub) and ipc files in *ipc_dir*.

    Returns the gateway settings that bind the same addresses.
    """
    from aitrados_api.trade_middleware import client_adresss_detector as D
    from aitrados_api.trade_middleware import intelligent_router_address as A

    names = ("frontend", "backend", "sub", "pub")
    classes = (A.FrontendIntelligentRouterAddress, A.BackendIntelligentRouterAddress,
               A.SubIntelligentRouterAddress, A.PubIntelligentRouterAddress)
    cfg: dict[str, object] = {"host": "127.0.0.1"}
    for name, cls, port in zip(names, classes, ports):
        cls.TCP = f"tcp://127.0.0.1:{port}"
        cls.IPC = f"ipc://{ipc_dir}/official_{name}.sock"
        cfg[f"{name}_port"] = port
        cfg[f"ipc_{name}"] = cls.IPC
    for det in (D.FrontendAddressDetector, D.BackendAddressDetector, D.SubAddressDetector, D.PubAddressDetector):
        det._address_url = None
    return cfg


def wait_for(cond: Any, timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll *cond* until truthy (bounded by *timeout* seconds); returns its value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError(f"{what} not met within {timeout}s")


def compat_runtime_settings(ipc_dir: str, symbols: list[str], **marketdata: Any) -> tuple[Any, dict[str, object]]:
    """Settings of a test runtime on the replay server (manual clock) with the gateway aimed at by the
    official clients; returns ``(settings, gateway settings)``."""
    from conftest import bus_settings

    cfg = point_official_clients(free_ports(4), ipc_dir)
    s = bus_settings(ipc_dir)
    md = s.marketdata
    md.provider = "replay"
    md.replay_symbols = symbols
    md.replay_autostart = "manual"
    for k, v in {"replay_days": 0.1, "replay_history_days": 0.1, **marketdata}.items():
        setattr(md, k, v)
    s.trading.report_dir = f"{ipc_dir}/report"
    s.plugins["aitrados_compat"] = cfg
    return s, cfg


def start_gateway(mw: Any, ipc_dir: str | None = None, **over: Any) -> Any:
    """A compat gateway on free tcp ports next to middleware *mw*, started; its ipc names in
    *ipc_dir* (none without it). *over* are further ``CompatSettings``."""
    from aitrados_plugins.aitrados_compat import CompatGateway, CompatSettings

    f, b, s, p = free_ports(4)
    ipc: dict[str, Any] = {"enable_ipc": False} if ipc_dir is None else {
        f"ipc_{role}": f"ipc://{ipc_dir}/o{role[0]}.sock" for role in ("frontend", "backend", "sub", "pub")}
    cfg = CompatSettings(frontend_port=f, backend_port=b, sub_port=s, pub_port=p, **ipc, **over)
    return CompatGateway(cfg, mw.endpoints(), mw.bus, mw.context).start()
