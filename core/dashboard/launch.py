"""Starting the dashboard beside a running middleware (what ``aitrados run --dashboard`` does)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from loguru import logger

if TYPE_CHECKING:
    from .server import DashboardServer

__all__ = ["DEFAULT_PORT", "start_dashboard"]

#: The port of ``aitrados run --dashboard`` without a PORT, and of ``--serve``.
DEFAULT_PORT = 8780


def start_dashboard(mw: Any, port: int = 0, host: str = "127.0.0.1", *, any_port_if_busy: bool = False) -> DashboardServer:
    """Serve the dashboard of middleware *mw* on *host*:*port* over inproc; returns the started server.

    The link with its one-time token is logged. The bus's operator token (when the middleware
    keeps one in ``mw.tokens``) is given to the server so the page's kill switch works. With
    *any_port_if_busy*, a port in use makes it take a free one (logged) instead of failing.
    """
    from .server import DashboardServer  # here: DEFAULT_PORT alone (the CLI's) loads no server

    ep = mw.endpoints()
    tokens = getattr(mw, "tokens", None) or {}

    def make(p: int) -> DashboardServer:
        return DashboardServer(ep.rpc_frontend, ep.subscribe, host=host, port=p, context=mw.context, bus=mw.bus,
                               operator_token=tokens.get("operator"))

    try:
        return make(port).start()
    except OSError as exc:
        if not any_port_if_busy or port == 0:
            raise OSError(f"cannot serve the dashboard on {host}:{port}: {exc}; "
                          "pick another with `aitrados run --dashboard PORT`") from exc
        logger.warning("dashboard port {} is busy ({}); taking a free one", port, exc)
        return make(0).start()
