"""The event vocabulary: event kinds, the topic grammar (build and parse) and payload decoding.

Every part that routes market or trading events uses this module: the market-data hub
(which publishes them and hands them to in-process consumers by kind), the trading runtime
and engine, the plugin host (which calls the matching hooks) and the remote strategy runner
of an isolated worker. docs/protocol.md §4.1 documents the same table; a test ties them.

========== ====================================== ================================= ====================
kind       topic                                  payload                           callback / hook
========== ====================================== ================================= ====================
bar        ``ohlc.<full_symbol>.<interval>``      ``Bar``                           ``on_bar``
chart      ``chart.<full_symbol>.<interval>``     chart window change (a map)       ``on_chart``
mtf        ``mtf.<group>``                        ``Snapshot.to_record()``          ``on_mtf``
news       ``news.<full_symbol>`` (``GENERAL``)   ``NewsItem``                      ``on_news``
calendar   ``calendar.<country>.<event_code>``    ``CalendarEvent``                 ``on_calendar_event``
order      ``order.<status>.<full_symbol>``       ``Order``                         ``on_order``
fill       ``fill.<full_symbol>``                 ``Fill``                          ``on_fill``
position   ``position.<full_symbol>``             ``Position`` (account-wide)       ``on_position`` (hook)
signal     ``signal.<module>.<full_symbol>``      ``Signal`` (analysis modules)     ``on_signal``
step       ``replay.step``                        ``{step, time}``                  —
end        ``replay.end``                         ``{clock, bars, step}``           ``on_stop``
========== ====================================== ================================= ====================

Full symbols may hold dots (``STOCK:US:BRK.B``): the interval is the *last* dotted part of an
``ohlc``/``chart`` topic, an order's status the *first* after ``order.``, a signal's module the *first* after ``signal.``.

This module imports nothing from aitrados at import time (records are imported when a payload
is decoded), so every layer may use it.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, TypeVar

_F = TypeVar("_F", bound=Callable[..., Any])

__all__ = [
    "CALLBACKS",
    "END_TOPIC",
    "Kind",
    "MARKET_KINDS",
    "ROOTS",
    "STEP_TOPIC",
    "Topic",
    "build_topic",
    "consumes",
    "decode",
    "decode_chart",
    "kind_of",
    "parse_topic",
    "snapshot_from_record",
    "topic_prefix",
]


class Kind(enum.StrEnum):
    """What an event is: the hub's consumer kinds and the bus topics' roots, one name each."""

    BAR = "bar"
    CHART = "chart"
    MTF = "mtf"
    NEWS = "news"
    CALENDAR = "calendar"
    ORDER = "order"
    FILL = "fill"
    POSITION = "position"
    SIGNAL = "signal"
    STEP = "step"
    END = "end"


#: Kind -> the root of its topics.
ROOTS: dict[Kind, str] = {
    Kind.BAR: "ohlc",
    Kind.CHART: "chart",
    Kind.MTF: "mtf",
    Kind.NEWS: "news",
    Kind.CALENDAR: "calendar",
    Kind.ORDER: "order",
    Kind.FILL: "fill",
    Kind.POSITION: "position",
    Kind.SIGNAL: "signal",
    Kind.STEP: "replay.step",
    Kind.END: "replay.end",
}
_BY_ROOT = {root: kind for kind, root in ROOTS.items()}

#: Kind -> the strategy callback and plugin hook its events go to (step and end have none).
CALLBACKS: dict[Kind, str] = {
    Kind.BAR: "on_bar",
    Kind.CHART: "on_chart",
    Kind.MTF: "on_mtf",
    Kind.NEWS: "on_news",
    Kind.CALENDAR: "on_calendar_event",
    Kind.ORDER: "on_order",
    Kind.FILL: "on_fill",
    Kind.POSITION: "on_position",
    Kind.SIGNAL: "on_signal",
}

#: The kinds the market-data hub produces that strategies receive.
MARKET_KINDS: tuple[Kind, ...] = (Kind.BAR, Kind.CHART, Kind.MTF, Kind.NEWS, Kind.CALENDAR)

STEP_TOPIC = ROOTS[Kind.STEP]
END_TOPIC = ROOTS[Kind.END]


class Topic(NamedTuple):
    """A parsed topic: its kind and parts.

    ``subject`` is the full symbol (bar, chart, news, order, fill, position, signal), the group
    (mtf) or the country (calendar); ``detail`` the interval (bar, chart), the event code
    (calendar), the order status (order) or the producing module (signal); both empty for step
    and end.
    """

    kind: Kind
    subject: str = ""
    detail: str = ""


def _part(value: str, what: str, kind: Kind) -> str:
    s = str(value)
    if not s or " " in s:
        raise ValueError(f"{kind.value} topic: {what} {s!r} must be non-empty and hold no spaces")
    return s


def consumes(*kinds: Kind | str) -> Callable[[_F], _F]:
    """Mark a market-data hub consumer (``consumer(kind, obj)``) as taking only events of *kinds*.

    The hub then does not call it for other kinds (a consumer without the mark gets every event,
    in the same order as before). Works on functions and methods alike (a bound method reads its
    function's mark). :returns: a decorator that returns the function itself, marked.
    """
    wanted = frozenset(Kind(k) for k in kinds)

    def mark(fn: _F) -> _F:
        fn.hub_kinds = wanted  # type: ignore[attr-defined]
        return fn

    return mark


@functools.lru_cache(maxsize=8192)
def build_topic(kind: Kind | str, subject: str = "", detail: str = "") -> str:
    """The topic an event of *kind* about *subject* (and *detail*) is published on.

    ``build_topic("bar", "STOCK:US:SPX", "DAY") == "ohlc.STOCK:US:SPX.DAY"``; news without a
    symbol go to ``news.GENERAL``. See the module table for each kind's parts. Results are
    cached (the hub asks for the same few topics once per bar).

    :raises ValueError: for an unknown kind, a missing part, a space, or over 255 bytes.
    """
    k = Kind(kind)
    root = ROOTS[k]
    if k in (Kind.STEP, Kind.END):
        t = root
    elif k in (Kind.BAR, Kind.CHART, Kind.CALENDAR):
        t = f"{root}.{_part(subject, 'subject', k)}.{_part(detail, 'detail', k)}"
    elif k in (Kind.ORDER, Kind.SIGNAL):
        what = "status" if k is Kind.ORDER else "module"
        t = f"{root}.{_part(detail, what, k)}.{_part(subject, 'full_symbol', k)}"
    elif k is Kind.NEWS:
        t = f"{root}.{_part(subject or 'GENERAL', 'full_symbol', k)}"
    else:  # mtf, fill, position
        t = f"{root}.{_part(subject, 'subject', k)}"
    if len(t.encode()) > 255:
        raise ValueError(f"topic {t[:60]!r}... is over 255 bytes")
    return t


def topic_prefix(kind: Kind | str, subject: str | None = None, detail: str | None = None) -> str:
    """The subscription prefix for events of *kind*, narrowed to *subject* (and *detail*) when given.

    ``topic_prefix("bar") == "ohlc."``, ``topic_prefix("bar", "STOCK:US:SPX") == "ohlc.STOCK:US:SPX."``,
    with a detail the whole topic. Order topics put the status first, so an order prefix
    narrows by status: ``topic_prefix("order", detail="filled") == "order.filled."``.
    """
    k = Kind(kind)
    root = ROOTS[k]
    if k in (Kind.STEP, Kind.END):
        return root
    if k in (Kind.ORDER, Kind.SIGNAL):
        if detail is None:
            return f"{root}."
        what = "status" if k is Kind.ORDER else "module"
        return build_topic(k, subject, detail) if subject else f"{root}.{_part(detail, what, k)}."
    if subject is None:
        return f"{root}."
    if detail is None:
        return f"{root}.{_part(subject, 'subject', k)}" + ("." if k in (Kind.BAR, Kind.CHART, Kind.CALENDAR) else "")
    return build_topic(k, subject, detail)


def kind_of(topic: str) -> Kind | None:
    """The kind of event *topic* carries, from its root alone (None for other topics)."""
    if topic in (STEP_TOPIC, END_TOPIC):
        return _BY_ROOT[topic]
    root, dot, _ = topic.partition(".")
    kind = _BY_ROOT.get(root)
    return kind if dot and kind not in (None, Kind.STEP, Kind.END) else None


def parse_topic(topic: str) -> Topic | None:
    """The kind and parts of *topic*; None when it is not an event topic (e.g. a probe).

    :raises ValueError: when the topic has an event root but lacks a part its kind needs.
    """
    if topic in (STEP_TOPIC, END_TOPIC):
        return Topic(_BY_ROOT[topic])
    root, dot, rest = topic.partition(".")
    kind = _BY_ROOT.get(root)
    if kind is None or kind in (Kind.STEP, Kind.END) or not dot:
        return None
    if kind in (Kind.BAR, Kind.CHART):
        subject, _, detail = rest.rpartition(".")
    elif kind in (Kind.CALENDAR, Kind.ORDER, Kind.SIGNAL):
        first, _, second = rest.partition(".")
        subject, detail = (first, second) if kind is Kind.CALENDAR else (second, first)
    else:
        subject, detail = rest, ""
    if not subject or (kind in (Kind.BAR, Kind.CHART, Kind.CALENDAR, Kind.ORDER, Kind.SIGNAL) and not detail):
        raise ValueError(f"topic {topic!r}: a {kind.value} topic is {_SHAPES[kind]}")
    return Topic(kind, subject, detail)


_SHAPES = {
    Kind.BAR: "ohlc.<full_symbol>.<interval>",
    Kind.CHART: "chart.<full_symbol>.<interval>",
    Kind.MTF: "mtf.<group>",
    Kind.NEWS: "news.<full_symbol>",
    Kind.CALENDAR: "calendar.<country>.<event_code>",
    Kind.ORDER: "order.<status>.<full_symbol>",
    Kind.FILL: "fill.<full_symbol>",
    Kind.POSITION: "position.<full_symbol>",
    Kind.SIGNAL: "signal.<module>.<full_symbol>",
}


# ---------------------------------------------------------------------------- payloads


def _convert(data: Any, cls: type[Any], from_record: Any = None) -> Any:
    """*data* as *cls*: the record itself, the struct's own fields, else the protocol record shape."""
    import msgspec

    if isinstance(data, cls):
        return data
    try:
        return msgspec.convert(data, cls)
    except (msgspec.ValidationError, TypeError) as exc:
        if from_record is None or not isinstance(data, Mapping):
            raise ValueError(f"payload is not a {cls.__name__}: {exc}") from None
    return from_record(data)


def snapshot_from_record(rec: Mapping[str, Any]) -> Any:
    """Rebuild an aligned ``Snapshot`` from its published record (``Snapshot.to_record()``).

    :raises ValueError: when the record lacks ``group``, ``frontier`` or ``bars``.
    """
    from .marketdata.align import Snapshot
    from .marketdata.models import bar_from_record, parse_timestamp

    if isinstance(rec, Snapshot):
        return rec
    if not isinstance(rec, Mapping):
        raise ValueError(f"snapshot record is a {type(rec).__name__}; expected Snapshot.to_record() output")
    missing = [k for k in ("group", "frontier", "bars") if k not in rec]
    if missing:
        raise ValueError(f"snapshot record lacks {', '.join(missing)}; expected Snapshot.to_record() output")
    bars = {
        (fs, iv): bar_from_record(b, fs, iv)
        for fs, by_iv in rec["bars"].items()
        for iv, b in by_iv.items()
    }
    return Snapshot(
        group=str(rec["group"]),
        frontier=parse_timestamp(rec["frontier"]),
        bars=bars,
        updated=tuple((m[0], m[1]) for m in rec.get("updated", ())),
        partial=bool(rec.get("partial", False)),
        missing=tuple((m[0], m[1]) for m in rec.get("missing", ())),
    )


def decode_chart(data: Mapping[str, Any]) -> dict[str, Any]:
    """A published chart message with its bars as ``Bar`` (what the hub hands in-process consumers).

    Keys: ``full_symbol``, ``interval``, ``seq``, ``size``, ``count``, ``last`` (Bar or None),
    ``closed`` (list of Bar).

    :raises ValueError: when a key is missing or a bar does not decode.
    """
    from .marketdata.models import Bar, bar_from_record

    if not isinstance(data, Mapping):
        raise ValueError(f"chart message is a {type(data).__name__}, not a map")
    missing = [k for k in ("full_symbol", "interval", "seq") if k not in data]
    if missing:
        raise ValueError(f"chart message lacks {', '.join(missing)}")
    out = dict(data)
    last = data.get("last")
    out["last"] = None if last is None else _convert(last, Bar, bar_from_record)
    out["closed"] = [_convert(b, Bar, bar_from_record) for b in data.get("closed") or ()]
    return out


def _step(data: Any) -> dict[str, Any]:
    from .marketdata.models import parse_timestamp

    if not isinstance(data, Mapping):
        raise ValueError(f"replay message is a {type(data).__name__}, not a map")
    out = dict(data)
    if out.get("step") is not None:
        out["step"] = int(out["step"])
    for key in ("time", "clock"):
        if out.get(key) is not None:
            out[key] = parse_timestamp(out[key])
    return out


def decode(kind: Kind | str, data: Any) -> Any:
    """The typed record an event of *kind* carries, from its bus payload (or the record itself).

    bar -> ``Bar``, chart -> :func:`decode_chart`, mtf -> ``Snapshot``, news -> ``NewsItem``,
    calendar -> ``CalendarEvent``, order -> ``Order``, fill -> ``Fill``, position -> ``Position``,
    signal -> ``Signal``,
    step and end -> a map with ``step`` an int and times as datetimes. Struct-shaped maps and the
    AiTrados protocol records both decode.

    :raises ValueError: when *data* does not fit the kind's record.
    """
    k = kind if type(kind) is Kind else Kind(kind)
    try:
        if k is Kind.BAR:
            from .marketdata.models import Bar, bar_from_record

            return _convert(data, Bar, bar_from_record)
        if k is Kind.CHART:
            return decode_chart(data)
        if k is Kind.MTF:
            return snapshot_from_record(data)
        if k is Kind.NEWS:
            from .marketdata.models import NewsItem, news_from_record

            return _convert(data, NewsItem, news_from_record)
        if k is Kind.CALENDAR:
            from .marketdata.models import CalendarEvent, event_from_record

            return _convert(data, CalendarEvent, event_from_record)
        if k in (Kind.ORDER, Kind.FILL, Kind.POSITION):
            from .trading.orders import Fill, Order, Position

            return _convert(data, {Kind.ORDER: Order, Kind.FILL: Fill, Kind.POSITION: Position}[k])
        if k is Kind.SIGNAL:
            from .signals.record import Signal

            return _convert(data, Signal)
        return _step(data)
    except ValueError as exc:
        raise ValueError(f"{k.value} event: {exc}") from None
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{k.value} event: payload does not decode: {type(exc).__name__}: {exc}") from None
