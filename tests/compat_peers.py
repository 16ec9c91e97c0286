"""Helpers for the compat tests: point the official aitrados-api client classes at a gateway.

The official client reads its router addresses from class attributes (its configuration); the
tests set them to free ports so they never touch the machine's real 51591-51594.
"""

from __future__ import annotations

import socket


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
