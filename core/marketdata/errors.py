"""Typed errors of the AiTrados-protocol clients, and the secret scrubber they share.

Every error a client raises derives from :class:`MarketDataError`; its message says what went
wrong and which setting or call fixes it. No message ever contains the secret key: messages
and URLs pass through :func:`scrub_secret` before they reach an exception or a log line.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import AitradosError

_SECRET_QUERY = re.compile(r"(secret_key=)[^&\s\"'#]*", re.IGNORECASE)
_SECRET_JSON = re.compile(r"(\"secret_key\"\s*:\s*\")[^\"]*(\")", re.IGNORECASE)
MASK = "***"


def scrub_secret(text: str, secret: str | None = None) -> str:
    """Return ``text`` with every ``secret_key=...`` value and every literal ``secret`` masked.

    :param text: a URL, log line or error message
    :param secret: the key itself, masked wherever it appears (even outside a query string) when it
        has at least 6 characters
    :returns: the text with the key replaced by ``***``
    """
    out = _SECRET_QUERY.sub(r"\1" + MASK, text)
    out = _SECRET_JSON.sub(r"\1" + MASK + r"\2", out)
    if secret and len(secret) >= 6:  # shorter "keys" would mask ordinary words; the query form is masked anyway
        out = out.replace(secret, MASK)
    return out


class MarketDataError(AitradosError):
    """Base of every market-data error (clients, the replay server's store, file loading).

    :ivar code: the protocol ``code`` (HTTP status or body code), when the server sent one
    :ivar detail: the server's ``detail`` field, when present
    """

    def __init__(self, message: str, *, code: int | None = None, detail: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.detail = detail


class AuthenticationError(MarketDataError):
    """The server rejected the secret key (HTTP or WebSocket).

    Fix: set ``AITRADOS_SECRET_KEY`` to a valid key, or use the local replay provider
    (``AITRADOS_MARKETDATA__PROVIDER=replay``), which needs no key.
    """


class UnknownSymbolError(MarketDataError, LookupError):
    """No data for the requested full_symbol: the server said so (clients), or the replay store
    does not serve it.

    :ivar available: the symbols the server or store named as available, else empty
    :ivar full_symbol: the symbol asked for, when known
    """

    def __init__(self, message: str, *, code: int | None = None, detail: Any = None,
                 available: list[str] | None = None, full_symbol: str | None = None) -> None:
        super().__init__(message, code=code, detail=detail)
        self.available = list(available or [])
        self.full_symbol = full_symbol


class BadParameterError(MarketDataError):
    """The server refused the request's parameters (bad interval, bad date, bad limit ...); the
    replay server's ``detail.error`` is ``bad_parameter``. (The bus's ``BadRequestError`` is the RPC
    router's or a service's refusal of a request.)"""


class BadIntervalError(BadParameterError):
    """The interval is not one of ``1M 3M 5M 10M 15M 30M 60M 120M 240M DAY WEEK MON``
    (or the server has no data at that interval for the symbol)."""


class RateLimitError(MarketDataError):
    """HTTP 429: the server's request quota is exhausted; never retried automatically.

    :ivar retry_after: seconds the server asked to wait (``Retry-After``), or ``None``
    """

    def __init__(self, message: str, *, code: int | None = 429, detail: Any = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message, code=code, detail=detail)
        self.retry_after = retry_after


class ServerUnavailableError(MarketDataError):
    """5xx replies, timeouts or connection errors persisted past the retry budget
    (``marketdata.retry_max_attempts`` / ``marketdata.retry_max_total_seconds``)."""


class ProtocolError(MarketDataError):
    """The server's reply did not follow the AiTrados envelope (not JSON, no ``code``, bad shape)."""


def error_from_reply(code: int, message: str, detail: Any = None, *, where: str = "") -> MarketDataError:
    """Map an error reply of the AiTrados protocol to the typed error a caller can catch.

    The cloud's error codes are not documented, so the mapping uses the status code first and
    the words of the message second; the replay server sends ``detail.error`` explicitly.

    :param code: the body's ``code`` (or the HTTP status when the body has none)
    :param message: the body's ``message``
    :param detail: the body's ``detail``
    :param where: what was asked (already scrubbed), prefixed to the message
    :returns: an instance of a :class:`MarketDataError` subclass (not raised)
    """
    kind = detail.get("error") if isinstance(detail, dict) else None
    text = f"{where}: {message}" if where else message
    low = message.lower()
    if kind is None:  # no explicit kind (the cloud): guess from the code and the words
        if code == 429:
            kind = "rate_limited"
        elif code in (401, 403) or ("secret" in low and "key" in low):
            kind = "bad_secret_key"
        elif code == 404 and "symbol" in low:
            kind = "unknown_symbol"
        elif "interval" in low:
            kind = "bad_interval"
    if kind == "rate_limited":
        return RateLimitError(f"{text} (rate limited; wait and retry, or lower the request rate)",
                              code=code, detail=detail)
    if kind == "bad_secret_key":
        return AuthenticationError(
            f"{text} (set AITRADOS_SECRET_KEY to a valid AiTrados key, or run on the local replay "
            "provider with AITRADOS_MARKETDATA__PROVIDER=replay)", code=code, detail=detail)
    if kind == "unknown_symbol":
        available = detail.get("available") if isinstance(detail, dict) else None
        return UnknownSymbolError(text, code=code, detail=detail, available=available)
    if kind == "bad_interval":
        return BadIntervalError(text, code=code, detail=detail)
    if code >= 500:
        return ServerUnavailableError(text, code=code, detail=detail)
    return BadParameterError(text, code=code, detail=detail)
