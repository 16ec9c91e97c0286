"""The replay server's HTTP API: AiTrados ``/api/v2/...`` GET requests -> envelope replies.

Pure request handling (no sockets): :meth:`ReplayAPI.handle` takes the raw request target
(path with raw ``:`` and ``+``, form-encoded query) and returns ``(status, body, content_type)``.
Every answer uses the protocol envelope (§1.4); errors carry ``detail.error`` naming the kind
(``bad_secret_key``, ``unknown_symbol``, ``bad_interval``, ``bad_parameter``, ``not_found``,
``not_available``) so a client can raise a typed error. Nothing after the replay clock is ever
returned (no look-ahead); calendar events after the clock are listed with their outcome masked.
"""

from __future__ import annotations

import binascii
import csv
import datetime as dt
import io
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import msgspec

from .errors import MarketDataError, UnknownSymbolError
from .intervals import INTERVALS, normalize_interval
from .models import Bar, bar_to_record, format_timestamp, normalize_full_symbol, parse_timestamp
from . import replay_reference as RR
from .replay_store import (
    ReplayStore,
    UnavailableInterval,
    event_record,
    news_record,
)

BAR_COLUMNS = ["asset_schema", "interval", "country_iso_code", "exchange", "symbol", "datetime",
               "close_datetime", "open", "high", "low", "close", "volume", "vwap"]
_PREFIXES = ("/api/api/v2/", "/api/v2/")
_json = msgspec.json.Encoder()


class ApiError(MarketDataError):
    """An error reply: HTTP/body ``code``, ``message`` and ``detail`` (``detail.error`` = kind)."""

    def __init__(self, code: int, message: str, kind: str, **detail: Any) -> None:
        super().__init__(message, code=code, detail={"error": kind, **detail})


def ok(result: Any, reference: str | None = None) -> dict[str, Any]:
    """The success envelope."""
    return {"status": "ok", "code": 200, "message": "success", "reference": reference, "result": result}


def error_body(code: int, message: str, detail: Any = None) -> dict[str, Any]:
    """The error envelope."""
    return {"status": "error", "code": code, "message": message, "reference": None, "detail": detail}


# --------------------------------------------------------------------------- parameters


def _bad(message: str, **detail: Any) -> ApiError:
    return ApiError(400, message, "bad_parameter", **detail)


def _int(q: dict[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = q.get(name)
    if raw is None or raw == "":
        return default
    try:
        v = int(raw)
    except ValueError:
        raise _bad(f"{name} must be an integer {lo}..{hi}, got {raw!r}") from None
    if not lo <= v <= hi:
        raise _bad(f"{name} must be between {lo} and {hi}, got {v}")
    return v


def _bool(q: dict[str, str], name: str) -> bool:
    raw = q.get(name, "0").strip().lower()
    if raw in ("0", "false", "no", ""):
        return False
    if raw in ("1", "true", "yes"):
        return True
    raise _bad(f"{name} must be 0/1 or true/false, got {raw!r}")


def _choice(q: dict[str, str], name: str, default: str, allowed: tuple[str, ...]) -> str:
    raw = (q.get(name) or default).strip().lower()
    if raw not in allowed:
        raise _bad(f"{name} must be one of {', '.join(allowed)}, got {raw!r}")
    return raw


def _dt(value: str | None, name: str) -> dt.datetime | None:
    if value is None or value == "":
        return None
    try:
        return parse_timestamp(value)
    except ValueError:
        raise _bad(f"{name} is not a datetime: {value!r}; use ISO 8601 like 2025-07-18T00:00:00+00:00, "
                   "2025-07-18 00:00:00 or 2025-07-18") from None


def _require(q: dict[str, str], name: str) -> str:
    v = q.get(name)
    if not v:
        raise _bad(f"query parameter {name} is required")
    return v


def _topic_match(pattern: str, key: str) -> bool:
    """``STOCK:US:*`` style match: ``*`` as the last part matches the rest, elsewhere one part."""
    pp, kp = pattern.upper().split(":"), key.upper().split(":")
    for i, p in enumerate(pp):
        if p == "*" and i == len(pp) - 1:
            return True
        if i >= len(kp) or (p != "*" and p != kp[i]):
            return False
    return len(pp) == len(kp)


def encode_page_key(offset: int, asof: dt.datetime) -> str:
    """An opaque page key (hex) holding the next offset and the clock time of the first page."""
    return binascii.hexlify(_json.encode({"o": offset, "t": format_timestamp(asof)})).decode()


def decode_page_key(key: str) -> tuple[int, dt.datetime]:
    """Inverse of :func:`encode_page_key`; :raises ApiError: for a key this server did not make."""
    try:
        d = msgspec.json.decode(binascii.unhexlify(key))
        return int(d["o"]), parse_timestamp(d["t"])
    except (ValueError, KeyError, TypeError, binascii.Error, msgspec.DecodeError):
        raise _bad("next_page_key is not one this server issued; re-send the first request without it") from None


def _csv(rows: list[dict[str, Any]], columns: list[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow(["" if r.get(c) is None else r.get(c) for c in columns])
    return buf.getvalue()


# --------------------------------------------------------------------------- the API


#: The endpoints: path pattern after ``/api/v2/`` -> endpoint name, whose handler is
#: ``ReplayAPI._<name>(seg, query, target)``. ``*`` matches any one segment, other parts match
#: case-insensitively; the first pattern that fits a path wins.
ROUTES: tuple[tuple[str, str], ...] = (
    ("*/bars/*/*/latest", "ohlc_latest"),  # {asset}/bars/{country:symbol}/{interval}/latest
    ("*/bars/*/*/from/*/to/*", "ohlc_history"),
    ("*/reference/*", "reference"),  # {asset}/reference/{country:symbol}
    ("economic_calendar/event_list", "event_list"),
    ("economic_calendar/event", "event"),
    ("economic_calendar/latest_event_list", "latest_event_list"),
    ("economic_calendar/event_codes", "event_codes"),
    ("economic_calendar/event_codes/*", "event_codes"),  # {country}
    ("holiday/list", "holiday_list"),
    ("holiday/holiday_codes/*", "holiday_codes"),  # {country}
    ("news/list", "news_list"),
    ("news/latest", "news_latest"),
    ("server/address_info", "address_info"),
    ("option/search/*/*/*/moneyness/*", "option_search"),  # {asset}/{country:symbol}/{call|put}/moneyness/{m}
    ("option/expiration_date_list/*/*", "option_expiration_date_list"),  # {asset}/{country:symbol}
    ("stock/stock_corporate_action/list/*", "stock_corporate_action_list"),  # {country:symbol}
)
_ROUTE_PARTS = tuple((tuple(pattern.split("/")), name) for pattern, name in ROUTES)


def match_route(seg: list[str]) -> str | None:
    """The endpoint name of the path segments *seg* (after ``/api/v2/``), or None when no route fits."""
    low = [s.lower() for s in seg]
    for parts, name in _ROUTE_PARTS:
        if len(parts) == len(low) and all(p in ("*", s) for p, s in zip(parts, low)):
            return name
    return None


class ReplayAPI:
    """Routes and answers the AiTrados HTTP endpoints from a :class:`ReplayStore`.

    :param store: the data
    :param now: returns the replay clock's current time
    :param secret_key: when set, requests must carry this ``secret_key``
    :param address_info: returns the server's addresses (for ``server/address_info``)

    ``counts`` counts answered requests per endpoint name (``ohlc_latest``, ``ohlc_history``,
    ``news_list`` ...), ``symbol_counts`` per ``"<endpoint> <full_symbol> <interval>"``.
    """

    def __init__(self, store: ReplayStore, now: Callable[[], dt.datetime], secret_key: str | None = None,
                 address_info: Callable[[], dict[str, Any]] | None = None) -> None:
        self.store = store
        self.now = now
        self.secret_key = secret_key
        self.address_info = address_info or (lambda: {})
        self.counts: Counter[str] = Counter()
        self.symbol_counts: Counter[str] = Counter()

    # ------------------------------------------------------------------ entry

    def handle(self, target: str) -> tuple[int, bytes, str]:
        """Answer one GET request target (``/api/v2/...?...``).

        :returns: ``(http_status, body, content_type)``; the body is always a JSON envelope
        """
        try:
            status, body = self._route(target)
        except ApiError as e:
            status, body = e.code, error_body(e.code, e.message, e.detail)
        return status, _json.encode(body), "application/json"

    def endpoint_of(self, target: str) -> str | None:
        """The endpoint name a request target maps to (for counters and failure injection)."""
        try:
            return self._parse(target)[0]
        except ApiError:
            return None

    def _parse(self, target: str) -> tuple[str, list[str], dict[str, str]]:
        """``(endpoint, path segments after /api/v2/, query)`` of *target*, by the first matching :data:`ROUTES` entry."""
        parts = urlsplit(target)
        path = parts.path
        rest = next((path[len(p):] for p in _PREFIXES if path.startswith(p)), None)
        if rest is None:
            raise ApiError(404, f"no such endpoint {path!r}; the API lives under /api/v2/", "not_found")
        seg = [unquote(s) for s in rest.strip("/").split("/")]  # unquote keeps '+' as '+'
        name = match_route(seg)
        if name is None:
            raise ApiError(404, f"no such endpoint {path!r}", "not_found")
        return name, seg, dict(parse_qsl(parts.query, keep_blank_values=True))

    def _route(self, target: str) -> tuple[int, dict[str, Any]]:
        """Check the key, count the request and answer it with the endpoint's handler ``_<endpoint>``."""
        name, seg, q = self._parse(target)
        if self.secret_key is not None and q.get("secret_key", "").strip() != self.secret_key:
            raise ApiError(401, "invalid secret_key: the replay server was started with a key and this "
                                "request carried another (or none)", "bad_secret_key")
        self.counts[name] += 1
        return 200, getattr(self, "_" + name)(seg, q, target)

    # ------------------------------------------------------------------ OHLC

    def _symbol(self, asset: str, country_symbol: str) -> str:
        try:
            fs = normalize_full_symbol(f"{asset}:{country_symbol}")
        except ValueError as e:
            raise _bad(str(e)) from None
        try:
            return self.store.resolve(fs)
        except UnknownSymbolError as e:
            raise ApiError(404, f"unknown symbol {fs}: the replay server has no data for it; available: "
                                f"{', '.join(e.available)} (add files or AITRADOS_MARKETDATA__REPLAY_SYMBOLS)",
                           "unknown_symbol", symbol=fs, available=e.available) from None

    def _interval(self, fs: str, raw: str) -> str:
        try:
            iv = normalize_interval(raw)
        except ValueError as e:
            raise ApiError(400, str(e), "bad_interval", valid=list(INTERVALS)) from None
        return iv

    def _series_call(self, fs: str, iv: str, fn: Callable[[], list[Bar]]) -> list[Bar]:
        try:
            return fn()
        except UnavailableInterval as e:
            raise ApiError(404, str(e), "bad_interval", symbol=fs, available=e.available) from None

    @staticmethod
    def _bar_result(bars: list[Bar], fmt: str) -> tuple[int, Any]:
        rows = [bar_to_record(b) for b in bars]
        return len(rows), (_csv(rows, BAR_COLUMNS) if fmt == "csv" else rows)

    def _ohlc_latest(self, seg: list[str], q: dict[str, str], target: str) -> dict[str, Any]:
        fs = self._symbol(seg[0], seg[2])
        iv = self._interval(fs, seg[3])
        fmt = _choice(q, "format", "json", ("json", "csv"))
        limit = _int(q, "limit", 150, 1, 1000)
        _bool(q, "is_eth")
        self.symbol_counts[f"ohlc_latest {fs} {iv}"] += 1
        bars = self._series_call(fs, iv, lambda: self.store.latest_bars(fs, iv, self.now(), limit))
        count, data = self._bar_result(bars, fmt)
        return ok({"count": count, "data": data})

    def _ohlc_history(self, seg: list[str], q: dict[str, str], target: str) -> dict[str, Any]:
        fs = self._symbol(seg[0], seg[2])
        iv = self._interval(fs, seg[3])
        start, end = _dt(seg[5], "from_date"), _dt(seg[7], "to_date")
        fmt = _choice(q, "format", "json", ("json", "csv"))
        limit = _int(q, "limit", 150, 1, 1000)
        sort = _choice(q, "sort", "asc", ("asc", "desc"))
        _bool(q, "is_eth")
        offset, asof = self._page_start(q)
        self.symbol_counts[f"ohlc_history {fs} {iv}"] += 1
        bars = self._series_call(fs, iv, lambda: self.store.bars(fs, iv, asof, start, end))
        if sort == "desc":
            bars = bars[::-1]
        page = bars[offset:offset + limit]
        count, data = self._bar_result(page, fmt)
        return ok({**self._next(target, offset + limit, len(bars), asof), "count": count, "data": data})

    # ------------------------------------------------------------------ paging

    def _page_start(self, q: dict[str, str]) -> tuple[int, dt.datetime]:
        """The offset and clock time a page starts at. A key's time is capped to the replay clock,
        so a forged key (a later ``t``) never reaches bars past the clock (no look-ahead)."""
        key = q.get("next_page_key")
        if not key:
            return 0, self.now()
        offset, asof = decode_page_key(key)
        return max(0, offset), min(asof, self.now())

    def _next(self, target: str, offset: int, total: int, asof: dt.datetime) -> dict[str, Any]:
        if offset >= total:
            return {"next_page_key": None, "next_page_url": None}
        key = encode_page_key(offset, asof)
        parts = urlsplit(target)
        # the cloud's next_page_url is the full original URL, secret_key included (protocol §1.5)
        q = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "next_page_key"]
        q.append(("next_page_key", key))
        base = self.address_info().get("http_url", "")
        return {"next_page_key": key, "next_page_url": f"{base}{parts.path}?{urlencode(q)}"}

    def _paged(self, rows: list[dict[str, Any]], q: dict[str, str], target: str, limit: int, offset: int,
               asof: dt.datetime, fmt: str, columns: list[str] | None) -> dict[str, Any]:
        page = rows[offset:offset + limit]
        data: Any = _csv(page, columns or (list(page[0]) if page else [])) if fmt == "csv" else page
        return ok({**self._next(target, offset + limit, len(rows), asof), "count": len(page), "data": data})

    # ------------------------------------------------------------------ news

    def _news_filter(self, q: dict[str, str]) -> Callable[[Any], bool]:
        pattern = q.get("full_symbol")
        if not pattern:
            return lambda n: True
        return lambda n: bool(n.full_symbol) and _topic_match(pattern, n.full_symbol)

    def _news_list(self, seg: list[str], q: dict[str, str], target: str) -> dict[str, Any]:
        start = _dt(_require(q, "from_date"), "from_date")
        end = _dt(_require(q, "to_date"), "to_date")
        sort = _choice(q, "sort", "asc", ("asc", "desc"))
        limit = _int(q, "limit", 100, 1, 1001)
        offset, asof = self._page_start(q)
        keep = self._news_filter(q)
        items = [n for n in self.store.news_upto(asof) if start <= n.published_date <= end and keep(n)]  # type: ignore[operator]
        if sort == "desc":
            items.reverse()
        return self._paged([news_record(n) for n in items], q, target, limit, offset, asof, "json", None)

    def _news_latest(self, seg: list[str], q: dict[str, str], target: str) -> dict[str, Any]:
        sort = _choice(q, "sort", "asc", ("asc", "desc"))
        limit = _int(q, "limit", 100, 1, 1001)
        keep = self._news_filter(q)
        items = [n for n in self.store.news_upto(self.now()) if keep(n)][-limit:]
        if sort == "desc":
            items.reverse()
        rows = [news_record(n) for n in items]
        return ok({"count": len(rows), "data": rows})

    # ------------------------------------------------------------------ economic calendar

    def _events(self, q: dict[str, str]) -> list[Any]:
        country = (q.get("country_iso_code") or "").upper()
        code = (q.get("event_code") or "").upper()
        impact = (q.get("impact") or "").lower()
        if impact and impact not in ("low", "medium", "high", "all"):
            raise _bad(f"impact must be low, medium or high, got {impact!r}")
        source = q.get("source_id")
        start, end = _dt(q.get("from_date"), "from_date"), _dt(q.get("to_date"), "to_date")
        out = []
        for e in self.store.events_all():
            if country and e.country_iso_code != country:
                continue
            if code and e.event_code != code:
                continue
            if impact and impact != "all" and e.impact != impact:
                continue
            if source and e.source_id != source:
                continue
            if (start and e.event_timestamp < start) or (end and e.event_timestamp > end):
                continue
            out.append(e)
        return out

    def _event_list(self, seg: list[str], q: dict[str, str], target: str) -> dict[str, Any]:
        sort = _choice(q, "sort", "asc", ("asc", "desc"))
        limit = _int(q, "limit", 100, 1, 1001)
        fmt = _choice(q, "format", "csv", ("json", "csv"))
        offset, asof = self._page_start(q)
        evs = self._events(q)
        if sort == "desc":
            evs.reverse()
        rows = [event_record(e, asof) for e in evs]
        return self._paged(rows, q, target, limit, offset, asof, fmt, None)

    def _event(self, seg: list[str], q: dict[str, str], target: str) -> dict[str, Any]:
        sort = _choice(q, "sort", "desc", ("asc", "desc"))
        now = self.now()
        past = [e for e in self._events(q) if e.event_timestamp <= now]
        if not past:
            return ok(None)
        return ok(event_record(past[-1] if sort == "desc" else past[0], now))

    def _event_codes(self, seg: list[str], q: dict[str, str], target: str) -> dict[str, Any]:
        country = seg[2] if len(seg) > 2 else "US"
        return ok(self.store.event_codes(country))

    def _latest_event_list(self, seg: list[str], q: dict[str, str], target: str) -> dict[str, Any]:
        date_type = _choice(q, "date_type", "all", ("upcoming", "historical", "all"))
        limit = _int(q, "limit", 5, 1, 1001)
        fmt = _choice(q, "format", "csv", ("json", "csv"))
        sort = _choice(q, "sort", "asc", ("asc", "desc"))
        now = self.now()
        evs = self._events(q)
        past = [e for e in evs if e.event_timestamp <= now][-limit:]
        future = [e for e in evs if e.event_timestamp > now][:limit]
        chosen = past if date_type == "historical" else future if date_type == "upcoming" else past + future
        if sort == "desc":
            chosen.reverse()
        rows = [event_record(e, now) for e in chosen]
        data: Any = _csv(rows, list(rows[0]) if rows else []) if fmt == "csv" else rows
        return ok({"count": len(rows), "data": data})

    # ------------------------------------------------------------------ holidays / reference / server

    def _holiday_list(self, seg: list[str], q: dict[str, str], target: str) -> dict[str, Any]:
        pattern = _require(q, "full_symbol")
        if pattern.count(":") != 2:
            raise _bad(f"full_symbol must be ASSET:COUNTRY:SYMBOL or ASSET:COUNTRY:* (e.g. stock:US:*), got {pattern!r}")
        asset, country, symbol = pattern.upper().split(":")
        code = (q.get("holiday_code") or "").upper()
        start, end = _dt(q.get("from_date"), "from_date"), _dt(q.get("to_date"), "to_date")
        sort = _choice(q, "sort", "asc", ("asc", "desc"))
        limit = _int(q, "limit", 100, 1, 1001)
        fmt = _choice(q, "format", "csv", ("json", "csv"))
        offset, asof = self._page_start(q)
        rows = []
        for h in self.store.holidays:
            if h["asset_name"].upper() != asset or h["country_iso_code"] != country:
                continue
            if symbol != "*" and h["symbol"] not in ("*", symbol):
                continue
            if code and h["holiday_code"] != code:
                continue
            day = dt.date.fromisoformat(h["calendar_date"])
            if (start and day < start.date()) or (end and day > end.date()):
                continue
            rows.append(h)
        if sort == "desc":
            rows.reverse()
        return self._paged(rows, q, target, limit, offset, asof, fmt, None)

    def _holiday_codes(self, seg: list[str], q: dict[str, str], target: str) -> dict[str, Any]:
        return ok(self.store.holiday_codes(seg[2]))

    def _reference(self, seg: list[str], q: dict[str, str], target: str) -> dict[str, Any]:
        fs = self._symbol(seg[0], seg[2])
        return ok(self.store.reference(fs), reference="cached")

    # ------------------------------------------------------------------ options / corporate actions

    def _underlying(self, asset: str, country_symbol: str) -> str:
        if asset.lower() != "stock" or ":" not in country_symbol:
            raise _bad(f"options are served for stocks as stock/COUNTRY:SYMBOL, not {asset}/{country_symbol}")
        return country_symbol.split(":", 1)[1].upper()

    def _option_search(self, seg: list[str], q: dict[str, str], target: str) -> dict[str, Any]:
        und = self._underlying(seg[2], seg[3])
        typ = seg[4].lower()
        if typ not in ("call", "put"):
            raise _bad(f"option_type {seg[4]!r}: use call or put")
        money = seg[6].lower()
        if money not in RR.MONEYNESS:
            raise _bad(f"moneyness {seg[6]!r}: use one of {', '.join(RR.MONEYNESS)}")
        offset, asof = self._page_start(q)
        limit = _int(q, "limit", 100, 1, 1000)
        ref = q.get("ref_asset_price")
        if ref is None:
            fs = self._symbol("stock", seg[3])
            finest = self.store.intervals(fs)[0]
            bars = self._series_call(fs, finest, lambda: self.store.latest_bars(fs, finest, asof, 1))
            if not bars:
                raise _bad("no price of the underlying at the replay clock yet: pass ref_asset_price")
            ref_price = bars[-1].close
        else:
            try:
                ref_price = float(ref)
            except ValueError:
                raise _bad(f"ref_asset_price {ref!r} is not a number") from None
        strike = q.get("strike_price")
        exp = _dt(q.get("expiration_date"), "expiration_date")
        try:
            strike_f = float(strike) if strike is not None else None
        except ValueError:
            raise _bad(f"strike_price {strike!r} is not a number") from None
        rows = RR.search_options(self.store.options, und, typ, money, ref_price, asof, strike_f,
                                 exp.date() if exp else None, q.get("sort_by"))
        page = rows[offset:offset + limit]
        exps, groups = RR.group_by_expiry(page)
        return ok({**self._next(target, offset + limit, len(rows), asof), "count": len(page),
                   "expiration_datetimes": exps, "data": groups})

    def _option_expiration_date_list(self, seg: list[str], q: dict[str, str], target: str) -> dict[str, Any]:
        return ok(RR.expiration_dates(self.store.options, self._underlying(seg[2], seg[3]), self.now()))

    def _stock_corporate_action_list(self, seg: list[str], q: dict[str, str], target: str) -> dict[str, Any]:
        if ":" not in seg[3]:
            raise _bad(f"country_symbol {seg[3]!r}: use COUNTRY:SYMBOL, e.g. US:AAPL")
        first = _dt(_require(q, "from_date"), "from_date")
        last = _dt(q.get("to_date"), "to_date")
        action = q.get("action_type")
        if action is not None and action not in ("dividend", "split"):
            raise _bad(f"action_type {action!r}: use dividend or split")
        fmt = _choice(q, "format", "json", ("json", "csv"))
        limit = _int(q, "limit", 150, 1, 1000)
        offset, asof = self._page_start(q)
        rows = RR.corporate_actions(self.store.corporate_actions, seg[3].split(":", 1)[1], asof,
                                    first.date(), last.date() if last else None, action)  # type: ignore[union-attr]
        return self._paged(rows, q, target, limit, offset, asof, fmt, None)

    def _address_info(self, seg: list[str], q: dict[str, str], target: str) -> dict[str, Any]:
        return ok(self.address_info())
