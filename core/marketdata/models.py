"""Typed market-data records (bars, news, economic-calendar events) with the AiTrados field names.

Everything here is pure: no I/O. Timestamps are timezone-aware UTC inside; the ``*_from_record``
helpers accept the protocol's JSON/CSV shapes (``Z``, ``+00:00``, naive = UTC, space or ``T``
separated, date-only) and the ``*_to_record`` helpers produce the protocol's JSON field names with
``%Y-%m-%dT%H:%M:%S+00:00`` timestamps (``Z`` form for ``event_timestamp``, as the cloud does).
"""

import datetime as dt
import math
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import msgspec

# imported once here, not per bar: an import statement in a hot function costs a module lookup each call
from .intervals import bar_close, normalize_interval, session_for

__all__ = [
    "ASSET_NAMES",
    "Bar",
    "NewsItem",
    "CalendarEvent",
    "parse_full_symbol",
    "normalize_full_symbol",
    "make_full_symbol",
    "parse_timestamp",
    "format_timestamp",
    "format_timestamp_z",
    "bar_from_record",
    "bar_to_record",
    "bar_problems",
    "news_from_record",
    "news_to_record",
    "event_from_record",
    "event_to_record",
]

UTC = dt.timezone.utc

#: Asset names allowed as the first part of a full_symbol (protocol §2).
ASSET_NAMES: tuple[str, ...] = ("STOCK", "FOREX", "CRYPTO", "FUTURE", "OPTION")


class Bar(msgspec.Struct, frozen=True, gc=False):
    """One OHLCV bar of one symbol and interval.

    ``datetime`` is the bar's open time and ``close_datetime`` its close time, both tz-aware UTC.
    ``closed`` is False for a live bar that is still forming.
    """

    full_symbol: str
    interval: str
    datetime: dt.datetime
    close_datetime: dt.datetime
    open: float
    high: float
    low: float
    close: float
    volume: float
    vwap: float | None = None
    closed: bool = True


class NewsItem(msgspec.Struct, frozen=True, gc=False):
    """One news item (protocol §1.7 "News"). ``published_date`` is tz-aware UTC.

    ``full_symbol`` is ours (``ASSET:COUNTRY:SYMBOL`` upper-case) and is derived from
    ``asset_name``/``country_iso_code``/``symbol`` when those are present.
    """

    published_date: dt.datetime
    title: str
    text_content: str = ""
    publisher: str = ""
    full_symbol: str | None = None
    asset_name: str | None = None
    country_iso_code: str | None = None
    symbol: str | None = None
    link_type: str | None = None
    publisher_url: str | None = None
    sentiment_label: str | None = None
    sentiment_score: float | None = None


class CalendarEvent(msgspec.Struct, frozen=True, gc=False):
    """One economic-calendar event (protocol §1.7 "Economic event"). ``event_timestamp`` is tz-aware UTC."""

    country_iso_code: str
    event_code: str
    event_name: str
    event_timestamp: dt.datetime
    impact: str = "medium"
    importance: int = 2
    event_driven_type: str | None = None
    actual_value: float | None = None
    previous_value: float | None = None
    forecast_value: float | None = None
    change: float | None = None
    change_percent: float | None = None
    period: str | None = None
    unit: str | None = None
    source_id: str | None = None
    preview_interval: str | None = None


# --------------------------------------------------------------------------- symbols


@lru_cache(maxsize=4096)
def parse_full_symbol(s: str) -> tuple[str, str, str]:
    """Split ``ASSET:COUNTRY:SYMBOL`` (any case) into upper-case ``(asset, country, symbol)``.

    :raises ValueError: when the string does not have three non-empty parts or the asset is unknown.
    """
    if not isinstance(s, str):
        raise ValueError(f"full_symbol must be a string like 'STOCK:US:AAPL', got {type(s).__name__}")
    parts = s.strip().upper().split(":")
    if len(parts) != 3 or not all(p.strip() for p in parts):
        raise ValueError(
            f"bad full_symbol {s!r}: expected ASSET:COUNTRY:SYMBOL, e.g. 'STOCK:US:AAPL' or 'CRYPTO:GLOBAL:BTCUSD'"
        )
    asset, country, symbol = (p.strip() for p in parts)
    if asset not in ASSET_NAMES:
        raise ValueError(f"bad full_symbol {s!r}: asset {asset!r} is not one of {', '.join(ASSET_NAMES)}")
    return asset, country, symbol


@lru_cache(maxsize=4096)
def normalize_full_symbol(s: str) -> str:
    """Return the canonical upper-case ``ASSET:COUNTRY:SYMBOL`` form (raises ValueError if malformed)."""
    return ":".join(parse_full_symbol(s))


def make_full_symbol(asset: str, country: str, symbol: str) -> str:
    """Build a canonical full_symbol from its three parts (validated)."""
    return normalize_full_symbol(f"{asset}:{country}:{symbol}")


# --------------------------------------------------------------------------- timestamps


def parse_timestamp(value: Any) -> dt.datetime:
    """Parse a timestamp into a tz-aware UTC datetime.

    Accepts a ``datetime`` (naive = UTC), a ``date`` (midnight UTC), an ISO string with ``T`` or
    space, with ``Z``, an offset or none (naive = UTC), a date-only string, or epoch seconds
    (int/float; values above 1e11 are taken as milliseconds).

    :raises ValueError: with the offending value when it cannot be parsed.
    """
    if isinstance(value, dt.datetime):
        d = value
    elif isinstance(value, dt.date):
        d = dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ValueError(f"bad timestamp {value!r}: not a finite number")
        secs = value / 1000.0 if abs(value) > 1e11 else float(value)
        return dt.datetime.fromtimestamp(secs, UTC)
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            raise ValueError("bad timestamp '': empty; expected ISO 8601 like 2025-07-18T00:30:00+00:00")
        if text[-1] in "zZ":
            text = text[:-1] + "+00:00"
        try:
            d = dt.datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(
                f"bad timestamp {value!r}: expected ISO 8601 like 2025-07-18T00:30:00+00:00 (Z, offset or naive=UTC)"
            ) from None
    else:
        raise ValueError(f"bad timestamp {value!r}: expected a string, datetime or epoch number")
    if d.tzinfo is None:
        return d.replace(tzinfo=UTC)
    return d.astimezone(UTC)


def format_timestamp(d: dt.datetime) -> str:
    """Format as ``%Y-%m-%dT%H:%M:%S+00:00`` (UTC, no fraction), the form OHLC and news records use."""
    if type(d) is dt.datetime and d.tzinfo is UTC:  # the common case, 5x faster than strftime
        return (d.replace(microsecond=0) if d.microsecond else d).isoformat()
    return parse_timestamp(d).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def format_timestamp_z(d: dt.datetime) -> str:
    """Format as ``%Y-%m-%dT%H:%M:%SZ`` (UTC), the form ``event_timestamp`` uses."""
    return parse_timestamp(d).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- helpers


def _float(rec: Mapping[str, Any], key: str, what: str) -> float:
    if key not in rec or rec[key] is None or rec[key] == "":
        raise ValueError(f"{what}: missing field {key!r}")
    try:
        v = float(rec[key])
    except (TypeError, ValueError):
        raise ValueError(f"{what}: field {key!r} is not a number: {rec[key]!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{what}: field {key!r} is not finite: {rec[key]!r}")
    return v


def _opt_float(rec: Mapping[str, Any], key: str, what: str) -> float | None:
    v = rec.get(key)
    if v is None or (isinstance(v, str) and v.strip() in ("", "null", "None", "NaN", "nan")):
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, str):
        v = v.strip().rstrip("%").replace(",", "")
    try:
        return float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: field {key!r} is not a number: {rec.get(key)!r}") from None


def _opt_str(rec: Mapping[str, Any], key: str) -> str | None:
    v = rec.get(key)
    if v is None:
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    s = str(v)
    return s if s != "" else None


def _symbol_from_record(rec: Mapping[str, Any], asset_key: str, what: str) -> str:
    fs = rec.get("full_symbol")
    if fs:
        return normalize_full_symbol(str(fs))
    asset, country, symbol = rec.get(asset_key), rec.get("country_iso_code"), rec.get("symbol")
    if not (asset and country and symbol):
        raise ValueError(
            f"{what}: no symbol; give 'full_symbol' or all of {asset_key!r}, 'country_iso_code', 'symbol'"
        )
    return make_full_symbol(str(asset), str(country), str(symbol))


# --------------------------------------------------------------------------- bars


def bar_from_record(
    rec: Mapping[str, Any],
    full_symbol: str | None = None,
    interval: str | None = None,
    *,
    closed: bool | None = None,
) -> Bar:
    """Build a :class:`Bar` from a protocol record (JSON object or CSV row dict).

    The symbol comes from ``full_symbol`` (argument, then record key) or from
    ``asset_schema``/``country_iso_code``/``symbol``; the interval from the argument or the record.
    ``close_datetime`` is computed from the interval when absent. ``closed`` defaults to the
    record's ``closed`` key, else True.

    :raises ValueError: naming the field that is missing or malformed.
    """
    what = "bar record"
    fs = normalize_full_symbol(full_symbol) if full_symbol else _symbol_from_record(rec, "asset_schema", what)
    iv_raw = interval if interval is not None else rec.get("interval")
    if not iv_raw:
        raise ValueError(f"{what} for {fs}: missing field 'interval'")
    iv = normalize_interval(str(iv_raw))
    if "datetime" not in rec or rec["datetime"] in (None, ""):
        raise ValueError(f"{what} for {fs}: missing field 'datetime'")
    opened = parse_timestamp(rec["datetime"])
    cd = rec.get("close_datetime")
    closes = parse_timestamp(cd) if cd not in (None, "") else bar_close(opened, iv, session_for(fs))
    if closed is None:
        c = rec.get("closed", True)
        closed = c if isinstance(c, bool) else str(c).strip().lower() not in ("0", "false", "no")
    return Bar(
        full_symbol=fs,
        interval=iv,
        datetime=opened,
        close_datetime=closes,
        open=_float(rec, "open", what),
        high=_float(rec, "high", what),
        low=_float(rec, "low", what),
        close=_float(rec, "close", what),
        volume=_float(rec, "volume", what) if rec.get("volume") not in (None, "") else 0.0,
        vwap=_opt_float(rec, "vwap", what),
        closed=closed,
    )


def bar_to_record(bar: Bar, *, exchange: str | None = None, asset_case: str = "upper") -> dict[str, Any]:
    """Convert a :class:`Bar` to a protocol OHLC record (JSON key order of §1.6).

    ``exchange`` defaults to the country code (the protocol's ``GLOBAL`` for FX/crypto);
    ``asset_case`` is ``"upper"`` (HTTP) or ``"lower"`` (WS pushes).
    """
    asset, country, symbol = parse_full_symbol(bar.full_symbol)
    return {
        "asset_schema": asset if asset_case == "upper" else asset.lower(),
        "interval": bar.interval,
        "country_iso_code": country,
        "exchange": exchange or country,
        "symbol": symbol,
        "datetime": format_timestamp(bar.datetime),
        "close_datetime": format_timestamp(bar.close_datetime),
        "open": bar.open,
        "high": bar.high,
        "low": bar.low,
        "close": bar.close,
        "volume": bar.volume,
        "vwap": bar.vwap,
    }


def bar_problems(bar: Bar) -> list[str]:
    """Return what is inconsistent in a bar (empty list when fine): high<low, open/close outside
    [low, high], negative volume, close time not after open time."""
    out: list[str] = []
    if bar.high < bar.low:
        out.append(f"high {bar.high} < low {bar.low}")
    else:
        if not (bar.low <= bar.open <= bar.high):
            out.append(f"open {bar.open} outside [low {bar.low}, high {bar.high}]")
        if not (bar.low <= bar.close <= bar.high):
            out.append(f"close {bar.close} outside [low {bar.low}, high {bar.high}]")
    if bar.volume < 0:
        out.append(f"negative volume {bar.volume}")
    if bar.close_datetime <= bar.datetime:
        out.append(f"close_datetime {bar.close_datetime} not after datetime {bar.datetime}")
    return out


# --------------------------------------------------------------------------- news


def news_from_record(rec: Mapping[str, Any]) -> NewsItem:
    """Build a :class:`NewsItem` from a protocol news record. Requires ``published_date`` and ``title``.

    :raises ValueError: naming the field that is missing or malformed.
    """
    what = "news record"
    if rec.get("published_date") in (None, ""):
        raise ValueError(f"{what}: missing field 'published_date'")
    if not rec.get("title"):
        raise ValueError(f"{what}: missing field 'title'")
    asset, country, symbol = _opt_str(rec, "asset_name"), _opt_str(rec, "country_iso_code"), _opt_str(rec, "symbol")
    fs: str | None = None
    if rec.get("full_symbol"):
        fs = normalize_full_symbol(str(rec["full_symbol"]))
        asset, country, symbol = (p.lower() if i == 0 else p for i, p in enumerate(parse_full_symbol(fs)))
    elif asset and country and symbol:
        try:
            fs = make_full_symbol(asset, country, symbol)
        except ValueError:
            fs = None
    return NewsItem(
        published_date=parse_timestamp(rec["published_date"]),
        title=str(rec["title"]),
        text_content=_opt_str(rec, "text_content") or "",
        publisher=_opt_str(rec, "publisher") or "",
        full_symbol=fs,
        asset_name=asset,
        country_iso_code=country,
        symbol=symbol,
        link_type=_opt_str(rec, "link_type"),
        publisher_url=_opt_str(rec, "publisher_url"),
        sentiment_label=_opt_str(rec, "sentiment_label"),
        sentiment_score=_opt_float(rec, "sentiment_score", what),
    )


def news_to_record(item: NewsItem) -> dict[str, Any]:
    """Convert a :class:`NewsItem` to a protocol news record (``published_date`` in ``+00:00`` form)."""
    return {
        "sentiment_label": item.sentiment_label,
        "asset_name": item.asset_name,
        "country_iso_code": item.country_iso_code,
        "symbol": item.symbol,
        "full_symbol": item.full_symbol,
        "link_type": item.link_type,
        "published_date": format_timestamp(item.published_date),
        "publisher": item.publisher,
        "title": item.title,
        "text_content": item.text_content,
        "publisher_url": item.publisher_url,
        "sentiment_score": item.sentiment_score,
    }


# --------------------------------------------------------------------------- calendar


def event_from_record(rec: Mapping[str, Any]) -> CalendarEvent:
    """Build a :class:`CalendarEvent` from a protocol economic-event record.

    Requires ``country_iso_code``, ``event_code`` and ``event_timestamp``; ``event_name`` defaults
    to the code. Numeric values accept strings like ``"3.5%"`` or ``"1,234"``.

    :raises ValueError: naming the field that is missing or malformed.
    """
    what = "calendar event record"
    for key in ("country_iso_code", "event_code", "event_timestamp"):
        if rec.get(key) in (None, ""):
            raise ValueError(f"{what}: missing field {key!r}")
    imp = rec.get("importance")
    try:
        importance = int(imp) if imp not in (None, "") else 2
    except (TypeError, ValueError):
        raise ValueError(f"{what}: field 'importance' is not an integer 1-3: {imp!r}") from None
    impact = str(rec.get("impact") or "medium").lower()
    if impact not in ("low", "medium", "high"):
        raise ValueError(f"{what}: field 'impact' must be low, medium or high, got {rec.get('impact')!r}")
    return CalendarEvent(
        country_iso_code=str(rec["country_iso_code"]).upper(),
        event_code=str(rec["event_code"]).upper(),
        event_name=str(rec.get("event_name") or rec["event_code"]),
        event_timestamp=parse_timestamp(rec["event_timestamp"]),
        impact=impact,
        importance=importance,
        event_driven_type=_opt_str(rec, "event_driven_type"),
        actual_value=_opt_float(rec, "actual_value", what),
        previous_value=_opt_float(rec, "previous_value", what),
        forecast_value=_opt_float(rec, "forecast_value", what),
        change=_opt_float(rec, "change", what),
        change_percent=_opt_float(rec, "change_percent", what),
        period=_opt_str(rec, "period"),
        unit=_opt_str(rec, "unit"),
        source_id=_opt_str(rec, "source_id"),
        preview_interval=_opt_str(rec, "preview_interval"),
    )


def event_to_record(ev: CalendarEvent) -> dict[str, Any]:
    """Convert a :class:`CalendarEvent` to a protocol record (``event_timestamp`` in ``Z`` form)."""
    rec = msgspec.structs.asdict(ev)
    rec["event_timestamp"] = format_timestamp_z(ev.event_timestamp)
    return rec
