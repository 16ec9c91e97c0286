"""The ``http`` RPC service: the middleware's one shared AiTrados HTTP client, for every process.

``aitrados call http get path=news/latest params='{"limit": 3}'`` answers the raw ``result`` of
the envelope, so a caller (the aitrados-api compat gateway, a client in another language) gets
the cloud's record shapes without opening its own connection or holding the key.
"""

from __future__ import annotations

import re
from typing import Any

from ..bus.service import Service
from .http_client import AsyncAitradosHTTPClient, Call

#: A path under ``/api/v2/``: no scheme, no ``..``, no query.
_PATH = re.compile(r"^[A-Za-z0-9_\-:.*/]+$")


def _raw(result: Any) -> Any:
    return result


class HTTPService(Service):
    """Raw GETs through the shared :class:`AsyncAitradosHTTPClient` (retries, rate limits, key scrubbing)."""

    name = "http"

    def __init__(self, http: AsyncAitradosHTTPClient) -> None:
        self._http = http

    async def get(self, path: str, params: dict[str, Any] | None = None, page_key: str | None = None) -> Any:
        """GET ``/api/v2/<path>`` with *params*; returns the envelope's ``result`` (typed errors raise).

        :param path: e.g. ``stock/bars/US:AAPL/DAY/latest``; ``..`` and absolute URLs are refused
        :param params: query parameters (None values dropped)
        :param page_key: the ``next_page_key`` of a previous page
        """
        if not isinstance(path, str) or not _PATH.match(path) or ".." in path or path.startswith("/"):
            raise ValueError(f"path {path!r} is not a relative /api/v2 path (letters, digits, _-:.*/ only)")
        items = tuple((str(k), v) for k, v in (params or {}).items() if v is not None)
        return await self._http._get(Call(path, items, _raw), page_key)
