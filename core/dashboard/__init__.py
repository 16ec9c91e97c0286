"""The live dashboard and Prometheus metrics of a running middleware.

``DashboardServer`` (``server.py``) serves the page (``static/``, with the vendored
lightweight-charts build and its licence), its WebSocket stream and ``/metrics``;
``DashboardState`` (``state.py``) is the pure model the stream is built from, and
``metrics.py`` the Prometheus collector. ``aitrados run --dashboard [PORT]`` starts it.
"""

from .server import DashboardServer, is_loopback
from .state import DashboardState

__all__ = ["DashboardServer", "DashboardState", "is_loopback"]
