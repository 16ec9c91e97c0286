"""HTTP clients of the AiTrados protocol (cloud or local replay server), sync and async, on httpx.

:class:`AitradosHTTPClient` and :class:`AsyncAitradosHTTPClient` send the same requests: every
endpoint is described once by :class:`RequestBuilder` (path, query, how to read the result) and
the two classes only differ in transport. Results are typed records (:class:`Bar`,
:class:`NewsItem`, :class:`CalendarEvent`) or plain dicts where the protocol has no model.

Behaviour:

* the key travels as the last query parameter ``secret_key``; it never appears in a log line or
  an exception message (everything is passed through :func:`scrub_secret`);
* 5xx replies, timeouts and connection errors are retried with exponential backoff, bounded by
  ``retry_max_attempts`` and ``retry_max_total_seconds`` — then :class:`ServerUnavailableError`;
* a bad key raises :class:`AuthenticationError`, an unknown symbol :class:`UnknownSymbolError`,
  a bad interval :class:`BadIntervalError`, HTTP 429 :class:`RateLimitError` (never retried);
* paged endpoints re-send the identical request with ``next_page_key`` until the key is empty
  (bounded by ``max_pages``; a repeated key is a :class:`ProtocolError`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
from loguru import logger

from .errors import (
    MarketDataError,
    ProtocolError,
    RateLimitError,
    ServerUnavailableError,
    error_from_reply,
    scrub_secret,
)
from .intervals import normalize_interval
from .models import (
    Bar,
    CalendarEvent,
    NewsItem,
    bar_from_record,
    event_from_record,
    format_timestamp,
    news_from_record,
    parse_full_symbol,
    parse_timestamp,
)
from .settings import CLOUD_HTTP_URL, MarketDataSettings

__all__ = ["AitradosHTTPClient", "AsyncAitradosHTTPClient", "RequestBuilder", "Call", "RetryPolicy"]

USER_AGENT = "aitrados-middleware/0.1"
DEFAULT_MAX_PAGES = 10_000


class _ScrubFilter(logging.Filter):
    """Masks ``secret_key=...`` in stdlib log records (httpx logs every request URL at INFO)."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if "secret_key" in msg:
            record.msg, record.args = scrub_secret(msg), ()
        return True


for _name in ("httpx", "httpcore"):
    logging.getLogger(_name).addFilter(_ScrubFilter())


def _register_secret(key: str | None) -> None:
    """Also tell the project's log filter about the key (defence in depth), when it exists."""
    try:
        from ..log import register_secret
    except ImportError:  # pragma: no cover - log module absent
        return
    register_secret(key)


def _path_time(value: dt.datetime | str) -> str:
    """A datetime for a URL path: ISO with ``T`` and ``+00:00`` (raw ``:`` and ``+`` are kept)."""
    return format_timestamp(parse_timestamp(value))


def _query_time(value: dt.datetime | str | None) -> str | None:
    """A datetime for a query value: ``YYYY-MM-DD HH:MM:SS+00:00``."""
    if value is None:
        return None
    return parse_timestamp(value).strftime("%Y-%m-%d %H:%M:%S+00:00")


def _split(full_symbol: str) -> tuple[str, str]:
    asset, country, symbol = parse_full_symbol(full_symbol)
    return asset.lower(), f"{country}:{symbol}"


@dataclass(frozen=True)
class Call:
    """One request to make: ``path`` under ``/api/v2/``, ``params`` (None values dropped),
    ``parse`` turning the envelope's ``result`` into the return value, ``paged`` when the result
    carries ``data`` and ``next_page_key``."""

    path: str
    params: tuple[tuple[str, Any], ...]
    parse: Callable[[Any], Any]
    paged: bool = False


def _data(result: Any, what: str) -> list[Any]:
    if not isinstance(result, dict) or not isinstance(result.get("data"), list):
        raise ProtocolError(f"{what}: expected result.data to be a list (request format=json)")
    return result["data"]


class RequestBuilder:
    """Builds the :class:`Call` of every endpoint (protocol §1.3); shared by both clients."""

    @staticmethod
    def ohlc_latest(full_symbol: str, interval: str, limit: int = 150, is_eth: bool = False) -> Call:
        """Latest closed bars (ascending)."""
        asset, cs = _split(full_symbol)
        iv = normalize_interval(interval)
        return Call(f"{asset}/bars/{cs}/{iv}/latest",
                    (("format", "json"), ("limit", int(limit)), ("is_eth", int(bool(is_eth)))),
                    lambda r: [bar_from_record(x, interval=iv) for x in _data(r, "ohlc latest")])

    @staticmethod
    def ohlc_history(full_symbol: str, interval: str, from_date: dt.datetime | str, to_date: dt.datetime | str,
                     limit: int = 1000, sort: str | None = None, is_eth: bool = False) -> Call:
        """Bars opening within ``[from_date, to_date]``, paged."""
        asset, cs = _split(full_symbol)
        iv = normalize_interval(interval)
        return Call(f"{asset}/bars/{cs}/{iv}/from/{_path_time(from_date)}/to/{_path_time(to_date)}",
                    (("format", "json"), ("limit", int(limit)), ("sort", sort), ("is_eth", int(bool(is_eth)))),
                    lambda r: [bar_from_record(x, interval=iv) for x in _data(r, "ohlc history")], paged=True)

    @staticmethod
    def news_list(from_date: dt.datetime | str, to_date: dt.datetime | str, full_symbol: str | None = None,
                  sort: str | None = "asc", limit: int = 100) -> Call:
        """News published within the range, paged."""
        return Call("news/list", (("from_date", _query_time(from_date)), ("to_date", _query_time(to_date)),
                                  ("full_symbol", full_symbol), ("sort", sort), ("limit", int(limit))),
                    lambda r: [news_from_record(x) for x in _data(r, "news list")], paged=True)

    @staticmethod
    def news_latest(full_symbol: str | None = None, limit: int = 5) -> Call:
        """The latest news."""
        return Call("news/latest", (("full_symbol", full_symbol), ("limit", int(limit))),
                    lambda r: [news_from_record(x) for x in _data(r, "news latest")])

    @staticmethod
    def _event_filters(country_iso_code: str | None, event_code: str | None, impact: str | None,
                       source_id: str | None, from_date: Any, to_date: Any) -> tuple[tuple[str, Any], ...]:
        return (("country_iso_code", country_iso_code), ("event_code", event_code), ("impact", impact),
                ("source_id", source_id), ("from_date", _query_time(from_date)), ("to_date", _query_time(to_date)))

    @classmethod
    def calendar_events(cls, country_iso_code: str | None = None, event_code: str | None = None,
                        impact: str | None = None, source_id: str | None = None, from_date: Any = None,
                        to_date: Any = None, sort: str | None = None, limit: int = 100) -> Call:
        """Economic events matching the filters, paged."""
        return Call("economic_calendar/event_list",
                    cls._event_filters(country_iso_code, event_code, impact, source_id, from_date, to_date)
                    + (("sort", sort), ("limit", int(limit)), ("format", "json")),
                    lambda r: [event_from_record(x) for x in _data(r, "event list")], paged=True)

    @classmethod
    def calendar_event(cls, country_iso_code: str | None = None, event_code: str | None = None,
                       impact: str | None = None, source_id: str | None = None, from_date: Any = None,
                       to_date: Any = None, sort: str | None = None) -> Call:
        """The most recent matching event (None when nothing matches)."""
        return Call("economic_calendar/event",
                    cls._event_filters(country_iso_code, event_code, impact, source_id, from_date, to_date)
                    + (("sort", sort),),
                    lambda r: event_from_record(r) if r else None)

    @staticmethod
    def calendar_latest(country_iso_code: str | None = None, event_code: str | None = None,
                        impact: str | None = None, date_type: str = "upcoming", limit: int = 5) -> Call:
        """Upcoming / historical / all latest events."""
        return Call("economic_calendar/latest_event_list",
                    (("country_iso_code", country_iso_code), ("event_code", event_code), ("impact", impact),
                     ("date_type", date_type), ("limit", int(limit)), ("format", "json")),
                    lambda r: [event_from_record(x) for x in _data(r, "latest events")])

    @staticmethod
    def calendar_event_codes(country_iso_code: str = "US") -> Call:
        """``{event_code: name}`` of a country."""
        return Call(f"economic_calendar/event_codes/{country_iso_code.upper()}", (), _dict_result)

    @staticmethod
    def holidays(full_symbol: str = "stock:US:*", holiday_code: str | None = None, from_date: Any = None,
                 to_date: Any = None, sort: str | None = "asc", limit: int = 100) -> Call:
        """Holiday records (dicts), paged."""
        return Call("holiday/list", (("full_symbol", full_symbol), ("holiday_code", holiday_code),
                                     ("from_date", _query_time(from_date)), ("to_date", _query_time(to_date)),
                                     ("sort", sort), ("limit", int(limit)), ("format", "json")),
                    lambda r: list(_data(r, "holiday list")), paged=True)

    @staticmethod
    def holiday_codes(country_iso_code: str = "US") -> Call:
        """``{holiday_code: name}`` of a country."""
        return Call(f"holiday/holiday_codes/{country_iso_code.upper()}", (), _dict_result)

    @staticmethod
    def reference(full_symbol: str) -> Call:
        """The asset reference record (dict)."""
        asset, cs = _split(full_symbol)
        return Call(f"{asset}/reference/{cs}", (), _dict_result)

    @staticmethod
    def address_info() -> Call:
        """``server/address_info`` (undocumented shape; the replay server answers its URLs)."""
        return Call("server/address_info", (), lambda r: r)


def _dict_result(result: Any) -> dict[str, Any]:
    if not isinstance(result, dict):
        raise ProtocolError(f"expected an object result, got {type(result).__name__}")
    return result


class RetryPolicy:
    """Bounded exponential backoff: attempts and total time both capped (never forever)."""

    def __init__(self, max_attempts: int = 5, max_total_seconds: float = 30.0, initial: float = 0.25,
                 max_backoff: float = 4.0) -> None:
        self.max_attempts = max_attempts
        self.max_total_seconds = max_total_seconds
        self.initial = initial
        self.max_backoff = max_backoff

    def delay(self, attempt: int, started: float) -> float | None:
        """Seconds to wait after failed attempt number ``attempt`` (1-based), or None to give up."""
        if attempt >= self.max_attempts:
            return None
        d = min(self.max_backoff, self.initial * (2 ** (attempt - 1)))
        if time.monotonic() - started + d >= self.max_total_seconds:
            return None
        return d

    def remaining(self, started: float) -> float:
        """Seconds left of the total budget."""
        return max(0.0, self.max_total_seconds - (time.monotonic() - started))


class _Retryable(MarketDataError):
    """Internal: a failure worth another attempt (5xx)."""


class _ClientCore:
    """State and reply handling shared by the sync and async clients."""

    def __init__(self, base_url: str | None, secret_key: str | None, settings: MarketDataSettings | None,
                 timeout: float | None, retry: RetryPolicy | None) -> None:
        s = settings or MarketDataSettings()
        url = (base_url or s.http_base_url or CLOUD_HTTP_URL).rstrip("/")
        if url.endswith("/api"):
            url = url[:-4]
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {url!r}")
        self.base_url = url
        key = (secret_key or "").strip() or None
        self._key = key
        _register_secret(key)
        self.timeout = timeout if timeout is not None else s.http_timeout
        self.retry = retry or RetryPolicy(s.retry_max_attempts, s.retry_max_total_seconds,
                                          s.retry_initial_backoff, s.retry_max_backoff)
        self.requests_sent = 0

    def url(self, call: Call) -> str:
        return f"{self.base_url}/api/v2/{call.path}"

    def params(self, call: Call, page_key: str | None = None) -> list[tuple[str, Any]]:
        p = [(k, v) for k, v in call.params if v is not None]
        if page_key:
            p.append(("next_page_key", page_key))
        if self._key:
            p.append(("secret_key", self._key))
        return p

    def where(self, call: Call) -> str:
        return scrub_secret(f"GET /api/v2/{call.path}", self._key)

    def scrub(self, text: str) -> str:
        return scrub_secret(text, self._key)

    def result(self, resp: httpx.Response, call: Call) -> Any:
        """The envelope's ``result``; raises the typed error of an error reply."""
        where = self.where(call)
        status = resp.status_code
        if status == 429:
            ra = resp.headers.get("Retry-After")
            try:
                retry_after = float(ra) if ra else None
            except ValueError:
                retry_after = None
            msg = "rate limit exceeded"
            try:
                msg = str(resp.json().get("message") or msg)
            except (ValueError, AttributeError):
                pass
            raise RateLimitError(self.scrub(f"{where}: {msg} (HTTP 429; wait and retry, or lower the request rate)"),
                                 retry_after=retry_after)
        if status >= 500:
            raise _Retryable(f"HTTP {status}")
        try:
            body = msgspec.json.decode(resp.content)
        except msgspec.DecodeError:
            if status >= 400:
                raise error_from_reply(status, self.scrub(f"HTTP {status}, body not JSON"), where=where) from None
            raise ProtocolError(f"{where}: reply is not JSON (HTTP {status}); is base_url "
                                f"{self.base_url} an AiTrados server?") from None
        if not isinstance(body, dict) or "code" not in body:
            if status >= 400:
                detail = body.get("detail") if isinstance(body, dict) else None
                raise error_from_reply(status, self.scrub(str(detail or f"HTTP {status}")), where=where)
            raise ProtocolError(f"{where}: reply has no 'code' (not the AiTrados envelope)")
        code = body.get("code")
        if code == 200:
            return body.get("result")
        try:
            code = int(code)
        except (TypeError, ValueError):
            raise ProtocolError(f"{where}: reply code {code!r} is not a number") from None
        if code >= 500:
            raise _Retryable(f"body code {code}")
        raise error_from_reply(code, self.scrub(str(body.get("message") or "error")),
                               body.get("detail"), where=where)

    def plan(self, call: Call, page_key: str | None = None) -> Generator[tuple[str, Any], Any, Any]:
        """The attempts of one request as steps, without I/O (sans-IO): yields ``("get", (url,
        params, timeout))`` and expects the ``httpx.Response`` or the transport exception back, or
        ``("sleep", seconds)``; returns the envelope's result or raises the typed error."""
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            self.requests_sent += 1
            timeout = max(0.05, min(self.timeout, self.retry.remaining(started)))
            outcome = yield "get", (self.url(call), self.params(call, page_key), timeout)
            try:
                if isinstance(outcome, BaseException):
                    raise outcome
                return self.result(outcome, call)
            except _Retryable as e:
                last = str(e)
            except httpx.TransportError as e:  # timeouts, refused connections, protocol errors
                last = _describe(e)
            delay = self.retry.delay(attempt, started)
            if delay is None:
                raise self.give_up(call, attempt, started, last)
            self.log_retry(call, last, attempt, delay)
            yield "sleep", delay

    def give_up(self, call: Call, attempts: int, started: float, last: str) -> ServerUnavailableError:
        return ServerUnavailableError(self.scrub(
            f"{self.where(call)} on {self.base_url}: gave up after {attempts} attempt(s) in "
            f"{time.monotonic() - started:.1f} s ({last}). Check the server is reachable, or raise "
            "marketdata.retry_max_attempts / retry_max_total_seconds"))

    def log_retry(self, call: Call, last: str, attempt: int, delay: float) -> None:
        logger.warning("market data {} failed ({}); retry {}/{} in {:.2f} s", self.where(call), self.scrub(last),
                       attempt, self.retry.max_attempts - 1, delay)

    @staticmethod
    def next_key(result: Any, seen: set[str], where: str) -> str | None:
        key = result.get("next_page_key") if isinstance(result, dict) else None
        if not key:
            return None
        if key in seen:
            raise ProtocolError(f"{where}: the server repeated next_page_key; stopping to avoid a loop")
        seen.add(key)
        return str(key)


def _describe(e: Exception) -> str:
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


class _ClientBase:
    """Construction and properties shared by the sync and async clients."""

    _transport: Any = httpx.Client

    def __init__(self, base_url: str | None = None, secret_key: str | None = None, *,
                 settings: MarketDataSettings | None = None, timeout: float | None = None,
                 retry: RetryPolicy | None = None, max_pages: int = DEFAULT_MAX_PAGES) -> None:
        self._core = _ClientCore(base_url, secret_key, settings, timeout, retry)
        self.max_pages = max_pages
        host = httpx.URL(self._core.base_url).host
        self._http = self._transport(headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
                                     follow_redirects=True,
                                     trust_env=host not in ("127.0.0.1", "localhost", "::1"))  # no proxy for loopback

    @property
    def base_url(self) -> str:
        """The server root in use."""
        return self._core.base_url

    @property
    def requests_sent(self) -> int:
        """HTTP requests sent so far (attempts included)."""
        return self._core.requests_sent


class AitradosHTTPClient(_ClientBase):
    """Synchronous AiTrados HTTP client (cloud or replay server).

    :param base_url: ``scheme://host[:port]`` (``/api/v2`` is appended); default the settings' cloud URL
    :param secret_key: the AiTrados key (any non-empty value for a keyless replay server)
    :param settings: market-data settings (timeouts, retry budget)
    :param timeout: seconds per request (default ``settings.http_timeout``)
    :param retry: a :class:`RetryPolicy` (default from the settings)
    :param max_pages: bound of the paging loops
    """

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> AitradosHTTPClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ transport

    def _get(self, call: Call, page_key: str | None = None) -> Any:
        plan = self._core.plan(call, page_key)
        step = next(plan)
        while True:
            kind, arg = step
            out: Any = None
            if kind == "get":
                try:
                    out = self._http.get(arg[0], params=arg[1], timeout=arg[2])
                except httpx.TransportError as e:
                    out = e
            else:
                time.sleep(arg)
            try:
                step = plan.send(out)
            except StopIteration as done:
                return done.value

    def call(self, call: Call) -> Any:
        """Send a :class:`Call`; paged calls return every page's records concatenated."""
        if not call.paged:
            return call.parse(self._get(call))
        return [x for page in self.iter_pages(call) for x in page]

    def iter_pages(self, call: Call) -> Iterator[list[Any]]:
        """Yield the parsed records of each page of a paged call."""
        key: str | None = None
        seen: set[str] = set()
        for _ in range(self.max_pages):
            result = self._get(call, key)
            yield call.parse(result)
            key = self._core.next_key(result, seen, self._core.where(call))
            if key is None:
                return
        raise MarketDataError(f"{self._core.where(call)}: more than max_pages={self.max_pages} pages; narrow the range")

    # ------------------------------------------------------------------ endpoints

    def ohlc_latest(self, full_symbol: str, interval: str, limit: int = 150, is_eth: bool = False) -> list[Bar]:
        """The latest ``limit`` closed bars, oldest first."""
        return self.call(RequestBuilder.ohlc_latest(full_symbol, interval, limit, is_eth))

    def ohlc_history(self, full_symbol: str, interval: str, from_date: dt.datetime | str,
                     to_date: dt.datetime | str, *, limit: int = 1000, sort: str | None = None,
                     is_eth: bool = False) -> list[Bar]:
        """Every bar opening in ``[from_date, to_date]`` (all pages), in ``sort`` order."""
        return self.call(RequestBuilder.ohlc_history(full_symbol, interval, from_date, to_date, limit, sort, is_eth))

    def news_list(self, from_date: dt.datetime | str, to_date: dt.datetime | str, full_symbol: str | None = None,
                  *, sort: str | None = "asc", limit: int = 100) -> list[NewsItem]:
        """News in the range (all pages)."""
        return self.call(RequestBuilder.news_list(from_date, to_date, full_symbol, sort, limit))

    def news_latest(self, full_symbol: str | None = None, limit: int = 5) -> list[NewsItem]:
        """The latest news."""
        return self.call(RequestBuilder.news_latest(full_symbol, limit))

    def calendar_events(self, **filters: Any) -> list[CalendarEvent]:
        """Economic events (all pages); filters of :meth:`RequestBuilder.calendar_events`."""
        return self.call(RequestBuilder.calendar_events(**filters))

    def calendar_event(self, **filters: Any) -> CalendarEvent | None:
        """The most recent matching economic event, or None."""
        return self.call(RequestBuilder.calendar_event(**filters))

    def calendar_latest(self, **filters: Any) -> list[CalendarEvent]:
        """Latest (``date_type`` upcoming/historical/all) economic events."""
        return self.call(RequestBuilder.calendar_latest(**filters))

    def calendar_event_codes(self, country_iso_code: str = "US") -> dict[str, str]:
        """``{event_code: name}``."""
        return self.call(RequestBuilder.calendar_event_codes(country_iso_code))

    def holidays(self, full_symbol: str = "stock:US:*", **filters: Any) -> list[dict[str, Any]]:
        """Holiday records (all pages)."""
        return self.call(RequestBuilder.holidays(full_symbol, **filters))

    def holiday_codes(self, country_iso_code: str = "US") -> dict[str, str]:
        """``{holiday_code: name}``."""
        return self.call(RequestBuilder.holiday_codes(country_iso_code))

    def reference(self, full_symbol: str) -> dict[str, Any]:
        """The asset reference record."""
        return self.call(RequestBuilder.reference(full_symbol))

    def address_info(self) -> dict[str, Any]:
        """The server's address information."""
        return self.call(RequestBuilder.address_info())


class AsyncAitradosHTTPClient(_ClientBase):
    """Asynchronous twin of :class:`AitradosHTTPClient`: same parameters, same requests,
    same methods as coroutines (``iter_pages`` is an async iterator)."""

    _transport = httpx.AsyncClient

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncAitradosHTTPClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _get(self, call: Call, page_key: str | None = None) -> Any:
        plan = self._core.plan(call, page_key)
        step = next(plan)
        while True:
            kind, arg = step
            out: Any = None
            if kind == "get":
                try:
                    out = await self._http.get(arg[0], params=arg[1], timeout=arg[2])
                except httpx.TransportError as e:
                    out = e
            else:
                await asyncio.sleep(arg)
            try:
                step = plan.send(out)
            except StopIteration as done:
                return done.value

    async def call(self, call: Call) -> Any:
        """Send a :class:`Call`; paged calls return every page's records concatenated."""
        if not call.paged:
            return call.parse(await self._get(call))
        return [x async for page in self.iter_pages(call) for x in page]

    async def iter_pages(self, call: Call) -> AsyncIterator[list[Any]]:
        """Yield the parsed records of each page of a paged call."""
        key: str | None = None
        seen: set[str] = set()
        for _ in range(self.max_pages):
            result = await self._get(call, key)
            yield call.parse(result)
            key = self._core.next_key(result, seen, self._core.where(call))
            if key is None:
                return
        raise MarketDataError(f"{self._core.where(call)}: more than max_pages={self.max_pages} pages; narrow the range")

    async def ohlc_latest(self, full_symbol: str, interval: str, limit: int = 150, is_eth: bool = False) -> list[Bar]:
        """The latest ``limit`` closed bars, oldest first."""
        return await self.call(RequestBuilder.ohlc_latest(full_symbol, interval, limit, is_eth))

    async def ohlc_history(self, full_symbol: str, interval: str, from_date: dt.datetime | str,
                           to_date: dt.datetime | str, *, limit: int = 1000, sort: str | None = None,
                           is_eth: bool = False) -> list[Bar]:
        """Every bar opening in ``[from_date, to_date]`` (all pages), in ``sort`` order."""
        return await self.call(RequestBuilder.ohlc_history(full_symbol, interval, from_date, to_date, limit, sort, is_eth))

    async def news_list(self, from_date: dt.datetime | str, to_date: dt.datetime | str,
                        full_symbol: str | None = None, *, sort: str | None = "asc", limit: int = 100) -> list[NewsItem]:
        """News in the range (all pages)."""
        return await self.call(RequestBuilder.news_list(from_date, to_date, full_symbol, sort, limit))

    async def news_latest(self, full_symbol: str | None = None, limit: int = 5) -> list[NewsItem]:
        """The latest news."""
        return await self.call(RequestBuilder.news_latest(full_symbol, limit))

    async def calendar_events(self, **filters: Any) -> list[CalendarEvent]:
        """Economic events (all pages)."""
        return await self.call(RequestBuilder.calendar_events(**filters))

    async def calendar_event(self, **filters: Any) -> CalendarEvent | None:
        """The most recent matching economic event, or None."""
        return await self.call(RequestBuilder.calendar_event(**filters))

    async def calendar_latest(self, **filters: Any) -> list[CalendarEvent]:
        """Latest economic events."""
        return await self.call(RequestBuilder.calendar_latest(**filters))

    async def calendar_event_codes(self, country_iso_code: str = "US") -> dict[str, str]:
        """``{event_code: name}``."""
        return await self.call(RequestBuilder.calendar_event_codes(country_iso_code))

    async def holidays(self, full_symbol: str = "stock:US:*", **filters: Any) -> list[dict[str, Any]]:
        """Holiday records (all pages)."""
        return await self.call(RequestBuilder.holidays(full_symbol, **filters))

    async def holiday_codes(self, country_iso_code: str = "US") -> dict[str, str]:
        """``{holiday_code: name}``."""
        return await self.call(RequestBuilder.holiday_codes(country_iso_code))

    async def reference(self, full_symbol: str) -> dict[str, Any]:
        """The asset reference record."""
        return await self.call(RequestBuilder.reference(full_symbol))

    async def address_info(self) -> dict[str, Any]:
        """The server's address information."""
        return await self.call(RequestBuilder.address_info())
