"""The MCP server's view of a middleware: its RPC services, its data provider, its bus.

:class:`Backend` connects to a running middleware (found by the bus settings, like
``aitrados status``), or starts an embedded one — routers, the local replay server, the
market-data hub and the trading service — when none answers. Every call is blocking and
thread-safe; the MCP tools run them off the server's event loop.
"""

from __future__ import annotations

import threading
from typing import Any

from loguru import logger

from ..bus.addresses import endpoints_for
from ..bus.client import RPCClient
from ..bus.pubsub import Publisher
from ..bus.tokens import read_token
from ..marketdata.http_client import AitradosHTTPClient
from ..settings import Settings


class Backend:
    """RPC calls, provider HTTP calls and publishing against one middleware.

    :param settings: effective settings (``bus`` says where the middleware is)
    :param embedded: ``"auto"`` starts one when none answers, ``"never"`` fails instead,
        ``"always"`` starts one without looking
    :param timeout: seconds per RPC call
    :param trading: send the middleware's operator token (read from its ipc folder, never logged) so
        ``trading.submit``/``cancel`` may act for the agent's strategy identity
    """

    def __init__(self, settings: Settings, *, embedded: str = "auto", timeout: float = 10.0,
                 trading: bool = False) -> None:
        if embedded not in ("auto", "never", "always"):
            raise ValueError(f"embedded must be auto, never or always, not {embedded!r}")
        self.settings = settings
        self.embedded_mode = embedded
        self.timeout = timeout
        self.trading = trading
        self.runtime: Any = None
        self._rpc: RPCClient | None = None
        self._pub: Publisher | None = None
        self._http: AitradosHTTPClient | None = None
        self._rpc_lock = threading.Lock()
        self._http_lock = threading.Lock()
        self._pub_lock = threading.Lock()

    # ------------------------------------------------------------------ start / stop
    def start(self) -> Backend:
        """Reach the middleware, or start an embedded one; raises saying what to do when neither works."""
        if self.embedded_mode != "always" and self._reachable():
            logger.info("mcp: connected to the running middleware {!r}", self.settings.bus.name)
        elif self.embedded_mode == "never":
            raise ConnectionError(f"no middleware named {self.settings.bus.name!r} answers; start one with "
                                  "`aitrados run --serve`, or let `aitrados mcp` embed one (--embedded auto)")
        else:
            from ..runtime import Runtime

            logger.info("mcp: no middleware answers; starting an embedded one with the replay server")
            self.runtime = Runtime(self.settings, plugins=[], exit_at_end=False).start()
        ep = self._endpoints()
        token = None
        if self.trading:
            token = read_token(self.settings.bus, "operator")
            if token is None:
                raise PermissionError("--allow-trading needs the middleware's operator token file (in its ipc "
                                      f"folder {self.settings.bus.ipc_dir!r}); run `aitrados mcp` as the user who "
                                      "runs the middleware")
        self._rpc = RPCClient(ep.rpc_frontend, bus=self.settings.bus, timeout=self.timeout,
                              context=self._context(), token=token)
        self._pub = Publisher(ep.publish, bus=self.settings.bus, context=self._context())
        return self

    def _context(self) -> Any:
        return self.runtime.mw.context if self.runtime is not None else None

    def _endpoints(self) -> Any:
        if self.runtime is not None:
            return self.runtime.mw.endpoints()
        return endpoints_for(self.settings.bus, "auto")

    def _reachable(self) -> bool:
        try:
            with RPCClient(endpoints_for(self.settings.bus, "auto").rpc_frontend, bus=self.settings.bus,
                           timeout=1.5) as c:
                c.call("middleware", "ping")
            return True
        except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
            logger.debug("mcp: middleware not reachable: {}", exc)
            return False

    def stop(self) -> None:
        """Close the clients and stop the embedded middleware, if any."""
        for c in (self._rpc, self._pub, self._http):
            if c is not None:
                c.close()
        self._rpc = self._pub = self._http = None
        if self.runtime is not None:
            self.runtime.stop()
            self.runtime = None

    # ------------------------------------------------------------------ calls
    def call(self, service: str, method: str, **params: Any) -> Any:
        """One RPC call; the service's error is raised with its message."""
        if self._rpc is None:
            raise RuntimeError("the MCP backend is not started")
        with self._rpc_lock:
            return self._rpc.call(service, method, **params)

    def http(self) -> AitradosHTTPClient:
        """An HTTP client of the middleware's data provider (the replay server or the cloud)."""
        with self._http_lock:
            if self._http is None:
                url = self.call("chart", "provider")["http_url"]
                key = self.settings.secret_key.get_secret_value() if self.settings.secret_key else "local-replay"
                self._http = AitradosHTTPClient(url, key, settings=self.settings.marketdata)
            return self._http

    def fetch(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call ``AitradosHTTPClient.<method>`` (one request at a time)."""
        client = self.http()
        with self._http_lock:
            return getattr(client, method)(*args, **kwargs)

    def publish(self, topic: str, obj: Any) -> None:
        """Publish *obj* on *topic* on the middleware's bus."""
        if self._pub is None:
            raise RuntimeError("the MCP backend is not started")
        with self._pub_lock:
            self._pub.publish(topic, obj)


__all__ = ["Backend"]
