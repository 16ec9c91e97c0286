"""The ``aitrados mcp`` subcommand: arguments and the handler that runs the MCP server."""

from __future__ import annotations

import argparse
import os
import re
import secrets
import sys
from pathlib import Path
from typing import Any

_IDENTITY = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,40}$")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``aitrados mcp``."""
    p.add_argument("--http", action="store_true", help="serve streamable HTTP on loopback instead of stdio")
    p.add_argument("--host", default="127.0.0.1", help="HTTP bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="HTTP port (default 8765; 0 picks a free one)")
    p.add_argument("--token-file", help="file holding the HTTP bearer token (else AITRADOS_MCP_TOKEN; "
                                        "else one is made and written to ./.aitrados-mcp-token)")
    p.add_argument("--allow-trading", action="store_true",
                   help="add the submit_order/cancel_order tools (paper orders through the risk engine)")
    p.add_argument("--identity", default="mcp_agent", help="strategy name the agent's orders carry (default mcp_agent)")
    p.add_argument("--plugins", default="", help="plugins whose register_mcp_tools tools to add (a,b)")
    p.add_argument("--embedded", choices=["auto", "never", "always"], default="auto",
                   help="start an embedded middleware with the replay server: auto = when none answers")


def _token(args: argparse.Namespace) -> str:
    if args.token_file:
        tok = Path(args.token_file).read_text().strip()
        if not tok:
            raise ValueError(f"token file {args.token_file} is empty")
        return tok
    tok = os.environ.get("AITRADOS_MCP_TOKEN", "").strip()
    if tok:
        return tok
    path = Path(".aitrados-mcp-token")
    tok = secrets.token_urlsafe(32)
    path.write_text(tok + "\n")
    path.chmod(0o600)
    print(f"aitrados mcp: no token given; made one in {path.resolve()} (send it as 'Authorization: Bearer ...')",
          file=sys.stderr, flush=True)
    return tok


def cmd_mcp(args: argparse.Namespace, settings: Any) -> int:
    """Serve the financial MCP tools of a running (or embedded) middleware to LLM agents."""
    try:
        import anyio
        import mcp  # noqa: F401
    except ImportError:
        print("error: the MCP server needs the mcp SDK: pip install 'aitrados[mcp]'", file=sys.stderr)
        return 2
    from .backend import Backend
    from .server import build_server, plugin_tools, serve_http, serve_stdio

    if not _IDENTITY.match(args.identity):
        print(f"error: --identity {args.identity!r}: use letters, digits, _ or - (at most 41)", file=sys.stderr)
        return 2
    if args.http and args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"error: --host {args.host}: the MCP HTTP server binds loopback only", file=sys.stderr)
        return 2
    token = _token(args) if args.http else ""
    names = [n.strip() for n in args.plugins.split(",") if n.strip()]
    extra = plugin_tools(settings, names)
    backend = Backend(settings, embedded=args.embedded, trading=args.allow_trading).start()
    try:
        server = build_server(backend, allow_trading=args.allow_trading, identity=args.identity, extra_tools=extra)
        if args.http:
            anyio.run(lambda: serve_http(server, token, args.host, args.port))
        else:
            anyio.run(serve_stdio, server)
    finally:
        backend.stop()
    return 0


__all__ = ["add_arguments", "cmd_mcp"]
