"""Topic and payload mapping between the native bus and the official subscribers' callbacks.

Native ``ohlc.*`` -> ``on_ohlc`` (a list of one cloud bar record), ``news.*`` -> ``on_news`` (a list of
one news record), ``calendar.*`` -> ``on_event`` (a list of one event record), ``chart.*`` ->
``on_ohlc_chart_flow_streaming`` and ``mtf.*`` -> ``on_multi_symbol_multi_timeframe`` (the native
map, bars as cloud records). Official publishers' messages come back natively as
``compat.<official topic>`` with the decoded JSON as data.
"""

from __future__ import annotations

import json
from typing import Any

from aitrados.events import Kind, decode, kind_of

from . import frames as F

#: Native kinds bridged to official subscribers, and their official topic.
OFFICIAL_TOPIC: dict[Kind, bytes] = {
    Kind.BAR: b"on_ohlc",
    Kind.NEWS: b"on_news",
    Kind.CALENDAR: b"on_event",
    Kind.CHART: b"on_ohlc_chart_flow_streaming",
    Kind.MTF: b"on_multi_symbol_multi_timeframe",
}
#: Native topic prefixes the bridge subscribes to.
NATIVE_PREFIXES: tuple[str, ...] = ("ohlc.", "news.", "calendar.", "chart.", "mtf.")
#: Root of the native topics official publishers' messages arrive on.
NATIVE_ROOT = "compat."


def _bar_record(bar: Any) -> dict[str, Any]:
    from aitrados.marketdata.models import bar_to_record

    return bar_to_record(bar)


def to_official(topic: str, data: Any) -> tuple[bytes, bytes] | None:
    """``(official topic, JSON body)`` for a native message, or None when it has no official twin."""
    kind = kind_of(topic)
    official = OFFICIAL_TOPIC.get(kind) if kind is not None else None
    if official is None:
        return None
    if kind is Kind.BAR:
        return official, F.dumps([_bar_record(decode(kind, data))])
    if kind is Kind.NEWS:
        from aitrados.marketdata.models import news_to_record

        return official, F.dumps([news_to_record(decode(kind, data))])
    if kind is Kind.CALENDAR:
        from aitrados.marketdata.models import event_to_record

        return official, F.dumps([event_to_record(decode(kind, data))])
    if kind is Kind.CHART:
        chart = decode(kind, data)
        chart["last"] = None if chart["last"] is None else _bar_record(chart["last"])
        chart["closed"] = [_bar_record(b) for b in chart["closed"]]
        return official, F.dumps(chart)
    return official, F.dumps(data)


def to_native(topic: bytes, body: bytes) -> tuple[str, Any] | None:
    """``(native topic, data)`` for an official message, or None for keep-alive noise.

    :raises ValueError: when the topic is not UTF-8 text usable as a native topic.
    """
    if topic in F.NOISE_TOPICS:
        return None
    text = topic.decode("utf-8")
    if not text or " " in text or len(text) > 200:
        raise ValueError(f"official topic {topic[:40]!r} cannot be a native topic")
    try:
        data: Any = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        data = body  # the official subscriber would get the raw text; native peers get the bytes
    return NATIVE_ROOT + text, data
