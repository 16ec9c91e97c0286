"""Financial MCP tools: an MCP server (official ``mcp`` SDK) in front of a running middleware.

``aitrados mcp`` serves it over stdio (for an agent's config file) or ``--http`` (streamable
HTTP on loopback, bearer token required). See docs/mcp.md. Needs the ``mcp`` extra:
``pip install 'aitrados[mcp]'``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:
    from .backend import Backend

# Loaded on first use: the CLI imports ``aitrados.mcp.cli`` for its arguments on every command.
__getattr__, __dir__ = lazy_exports(__name__, globals(), {"Backend": "backend"})

__all__ = ["Backend"]
