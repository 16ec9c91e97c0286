"""The ``aitrados_compat`` plugin: programs written for the official aitrados-api trade middleware
run unchanged against this middleware (``aitrados run --plugins aitrados_compat``).

It binds the official addresses (tcp 51591-51594 and the official ipc names) and speaks the official
frames there; see docs/compat.md for what maps to what.
"""

from __future__ import annotations

from typing import Any

from aitrados import hookimpl

from .gateway import CompatGateway
from .settings import CompatSettings

__all__ = ["CompatGateway", "CompatSettings"]

_gateways: dict[int, CompatGateway] = {}


@hookimpl
def register_settings(register: Any) -> None:
    """Declare ``[plugins.aitrados_compat]``."""
    register(CompatSettings)


@hookimpl
def on_startup(host: Any) -> None:
    """Start the gateway next to the middleware (not in an isolated worker: it binds ports)."""
    if host.in_worker:
        return
    cfg = host.plugin_settings("aitrados_compat")
    gw = CompatGateway(cfg, host.endpoints, host.settings.bus, getattr(host, "_context", None))
    _gateways[id(host)] = gw
    # a gateway that cannot start (a port in use) or whose thread dies later stops the run with its cause
    host.watch(gw)
    try:
        gw.start()
    except Exception as exc:
        gw.failure = exc
        raise


@hookimpl
def on_shutdown(host: Any) -> None:
    """Stop the gateway started for *host*."""
    gw = _gateways.pop(id(host), None)
    if gw is not None:
        gw.stop()
