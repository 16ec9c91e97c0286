"""``aitrados mcp``: an MCP server (official ``mcp`` SDK) exposing a running middleware to LLM agents.

:func:`build_server` makes the ``MCPServer`` with the read-only tools, the order tools when
trading is allowed, and the tools plugins contribute through ``register_mcp_tools``.
:func:`serve_stdio` and :func:`serve_http` run it (HTTP: streamable HTTP on loopback, every
request needs ``Authorization: Bearer <token>``).
"""

from __future__ import annotations

import hmac
import socket
import sys
from collections.abc import Iterable
from typing import Any

from loguru import logger

from .. import __version__
from ..errors import AitradosError
from .backend import Backend
from .tools import add_read_tools, add_trading_tools, clear_errors

INSTRUCTIONS = (
    "Tools of an aitrados trading middleware: market data (OHLC, chart windows, multi-timeframe "
    "snapshots, indicators), news, the economic calendar, holidays and sessions, symbol reference, "
    "the paper account, positions, orders and risk state, and backtests. Times are UTC. Symbols are "
    "ASSET:COUNTRY:SYMBOL (STOCK:US:SPX). Order tools exist only when the operator allowed trading; "
    "they act as one strategy identity under the middleware's risk limits and kill switch."
)


class McpToolError(AitradosError):
    """A plugin's MCP tool contribution is invalid (names the plugin)."""


def plugin_tools(settings: Any, names: Iterable[str]) -> list[tuple[str, Any, dict[str, Any]]]:
    """Load plugins *names* and collect their ``register_mcp_tools`` contributions.

    :returns: ``(plugin, function, options)`` per tool; raises :class:`McpToolError` naming the
        plugin when a contribution is not a callable or a name is taken twice.
    """
    from ..pluginhost.registry import PluginRegistry

    names = list(names)
    if not names:
        return []
    reg = PluginRegistry(settings, strict=True)
    reg.load(reg.select(names))
    out: list[tuple[str, Any, dict[str, Any]]] = []
    seen: dict[str, str] = {}
    for name, obj in reg.objects.items():
        impls = [i for i in reg.pm.hook.register_mcp_tools.get_hookimpls() if i.plugin is obj]
        for impl in impls:
            def register(fn: Any, name_: str | None = None, *, description: str | None = None,
                         _plugin: str = name) -> None:
                if not callable(fn):
                    raise McpToolError(f"plugin {_plugin!r} register_mcp_tools: {fn!r} is not a function")
                tool = name_ or fn.__name__
                if tool in seen:
                    raise McpToolError(f"plugin {_plugin!r} register_mcp_tools: tool {tool!r} is already "
                                       f"registered by {seen[tool]!r}")
                seen[tool] = _plugin
                out.append((_plugin, fn, {"name": tool, "description": description}))

            register.plugin = name  # type: ignore[attr-defined]
            register.settings = reg.plugin_settings.get(name)  # type: ignore[attr-defined]
            impl.function(register=register)
    return out


def build_server(backend: Backend, *, allow_trading: bool = False, identity: str = "mcp_agent",
                 extra_tools: Iterable[tuple[str, Any, dict[str, Any]]] = ()) -> Any:
    """The ``MCPServer`` over *backend*: read-only tools, order tools only when *allow_trading*."""
    from mcp.server import MCPServer

    server = MCPServer(name="aitrados", version=__version__, instructions=INSTRUCTIONS)
    add_read_tools(server, backend)
    if allow_trading:
        add_trading_tools(server, backend, identity)
    for plugin, fn, opts in extra_tools:
        try:
            server.add_tool(clear_errors(fn), name=opts["name"], description=opts.get("description"))
        except Exception as exc:
            raise McpToolError(f"plugin {plugin!r}: tool {opts['name']!r} rejected by the MCP SDK: {exc}") from exc
        logger.info("mcp: tool {!r} from plugin {!r}", opts["name"], plugin)
    return server


class BearerToken:
    """ASGI middleware: answer 401 unless the request carries ``Authorization: Bearer <token>``."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self._token = token.encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            auth = dict(scope.get("headers") or []).get(b"authorization", b"")
            given = auth[7:] if auth[:7].lower() == b"bearer " else b""
            if not hmac.compare_digest(given, self._token):
                body = b'{"error": "missing or wrong bearer token (see docs/mcp.md)"}'
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"www-authenticate", b"Bearer")]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


async def serve_stdio(server: Any) -> None:
    """Serve MCP over this process's stdin/stdout until the client closes them."""
    await server.run_stdio_async()


async def serve_http(server: Any, token: str, host: str = "127.0.0.1", port: int = 0,
                     ready: Any = None) -> None:
    """Serve MCP over streamable HTTP at ``http://host:port/mcp``; every request needs the bearer token.

    :param ready: called with the URL once the socket is bound (port 0 picks a free one).
    """
    import uvicorn

    if not token:
        raise ValueError("the HTTP transport needs a token (AITRADOS_MCP_TOKEN or --token-file)")
    app = BearerToken(server.streamable_http_app(host=host), token)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)  # connections wait in the backlog until uvicorn accepts: the URL is usable once printed
    url = f"http://{host}:{sock.getsockname()[1]}/mcp"
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    userver = uvicorn.Server(config)
    if ready is not None:
        ready(url)
    else:
        print(f"aitrados mcp: streamable HTTP at {url}", file=sys.stderr, flush=True)
    await userver.serve(sockets=[sock])


__all__ = ["BearerToken", "McpToolError", "build_server", "plugin_tools", "serve_http", "serve_stdio"]
