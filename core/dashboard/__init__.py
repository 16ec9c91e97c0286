"""The live dashboard and Prometheus metrics of a running middleware.

``DashboardServer`` (``server.py``) serves the page (``static/``, with the vendored
lightweight-charts build and its licence), its WebSocket stream and ``/metrics``;
``DashboardState`` (``state.py``) is the pure model the stream is built from, and
``metrics.py`` the Prometheus collector. ``aitrados run --dashboard [PORT]`` starts it.
"""

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:
    from .server import DashboardServer, is_loopback
    from .state import DashboardState

# Loaded on first use: a run without a dashboard (and report.html, which reads the vendored chart
# library from this package's files) does not load the server, Prometheus or the websockets server.
__getattr__, __dir__ = lazy_exports(__name__, globals(), {"DashboardServer": "server", "is_loopback": "server",
                                                          "DashboardState": "state"})

__all__ = ["DashboardServer", "DashboardState", "is_loopback"]
