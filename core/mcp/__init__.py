"""Financial MCP tools: an MCP server (official ``mcp`` SDK) in front of a running middleware.

``aitrados mcp`` serves it over stdio (for an agent's config file) or ``--http`` (streamable
HTTP on loopback, bearer token required). See docs/mcp.md. Needs the ``mcp`` extra:
``pip install 'aitrados[mcp]'``.
"""

from __future__ import annotations

from .backend import Backend

__all__ = ["Backend"]
