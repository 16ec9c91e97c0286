"""The market-data hub: one shared chart flow inside the middleware, fed by the AiTrados clients.

The hub lives on the runtime's event loop. It hydrates each chart window over HTTP
(N-1 closed bars), subscribes the symbol on the WebSocket stream, routes every pushed bar
through :class:`~aitrados.marketdata.flow.ChartFlow` and publishes what changed:

* ``ohlc.<full_symbol>.<interval>``: every bar update of every window (``closed`` tells whether final)
* ``chart.<full_symbol>.<interval>``: every window change, with its sequence number
* ``mtf.<group>``: one aligned snapshot per time frontier (``Snapshot.to_record()``)
* ``news.<full_symbol>`` / ``calendar.<COUNTRY>.<EVENT_CODE>``: news items and calendar events
  (``preview_interval`` ``1DAY``: the schedule a day ahead, outcome masked; ``REAL_TIME``: the release)
* ``replay.step`` ``{step, time}``: after all events of one data time step; ``replay.end``
  ``{clock, bars, step}`` at the end (``step`` follows the last ``replay.step``: lock-step
  consumers acknowledge it once they finished)

Topics and consumer kinds come from :mod:`aitrados.events`. In-process consumers (the trading
runtime) get the same events, in the same order, through ``consumers`` — one after the other,
each finished (awaited when it returns an awaitable) before the next, so a replay is
deterministic; a consumer marked with :func:`aitrados.events.consumes` gets only its kinds. The
bars of one pushed message (one time step) are handed on in one call, without an ``await`` per
bar while every consumer finishes at once. A closed bar goes to the consumers *before* it is published:
the trading runtime then publishes the fills of working orders at that bar before the bar, so a
strategy in another process hears of them first, like an in-process one. The hub is
reachable over RPC as the ``chart`` and ``mtf`` services: every module, process and language
shares this one instance, and the data is fetched once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from loguru import logger

from ..bus import protocol as P
from ..bus.pubsub import Publisher
from ..bus.service import Service
from ..events import Kind, build_topic, consumes
from .align import Snapshot
from .chart import Change, ChartWindow
from .flow import ChartFlow, FeedResult
from .http_client import AsyncAitradosHTTPClient
from .hydration import latest_closed_bars
from .models import Bar, CalendarEvent, NewsItem, normalize_full_symbol
from .ws_client import AitradosWSClient, ReplayEnd

Consumer = Callable[[str, Any], Awaitable[None] | None]
_ALL_KINDS = frozenset(Kind)
_NONE, _CLOSED = Change.NONE, Change.CLOSED
_BAR, _CHART = Kind.BAR, Kind.CHART  # per bar: reading a member off the enum class costs a lookup each time


class _ChartMessage(msgspec.Struct, gc=False):
    """The body of a ``chart.`` message: encodes to the same map, in the same key order, as the dict
    handed to in-process consumers (its bars here are the encoded bytes of the ``ohlc.`` messages).
    The hub writes these bytes itself (:func:`_chart_body`); this struct is their reference layout."""

    full_symbol: str
    interval: str
    seq: int
    size: int
    count: int
    last: Any
    closed: list[Any]


_encode = P.encode
_NIL = _encode(None)
_LAST_KEY, _CLOSED_KEY = _encode("last"), _encode("closed")
#: msgpack array headers of 0..15 items (one byte each); longer arrays are rare (see _array_head).
_ARRAY_HEADS = [_encode([None] * n)[:-n or None] for n in range(16)]
_CLOSED_ONE = _CLOSED_KEY + _ARRAY_HEADS[1]


def _array_head(n: int) -> bytes:
    """The msgpack header of an array of *n* items, as msgspec writes it."""
    return _ARRAY_HEADS[n] if n < 16 else _encode([None] * n)[:-n]


_CHART_FIELDS = [f.encode_name for f in msgspec.structs.fields(_ChartMessage)]
assert _CHART_FIELDS == ["full_symbol", "interval", "seq", "size", "count", "last", "closed"], "see _chart_body"
_CHART_HEAD = _encode(dict.fromkeys(_CHART_FIELDS))[:-sum(len(_encode(k)) + len(_NIL) for k in _CHART_FIELDS)]


def _chart_parts(full_symbol: str, interval: str, size: int) -> tuple[bytes, bytes]:
    """A window's constant pieces of its ``chart.`` bodies: the map header and fields up to the ``seq``
    key, and from the ``size`` field up to the ``count`` key (the field order of :class:`_ChartMessage`)."""
    return (b"".join((_CHART_HEAD, _encode("full_symbol"), _encode(full_symbol), _encode("interval"), _encode(interval),
                      _encode("seq"))),
            b"".join((_encode("size"), _encode(size), _encode("count"))))


def _chart_body(parts: tuple[bytes, bytes], seq: int, count: int, last: bytes | None, closed: list[bytes]) -> bytes:
    """The ``chart.`` body of a window with constant *parts* (:func:`_chart_parts`): the bytes
    ``P.encode(_ChartMessage(full_symbol, interval, seq, size, count, Raw(last), [Raw(b) for b in closed]))``
    gives, written without building the struct (*last* None: ``nil``)."""
    head, mid = parts
    if len(closed) == 1:  # the usual case: one bar closed
        return b"".join((head, _encode(seq), mid, _encode(count), _LAST_KEY, _NIL if last is None else last,
                         _CLOSED_ONE, closed[0]))
    return b"".join((head, _encode(seq), mid, _encode(count), _LAST_KEY, _NIL if last is None else last,
                     _CLOSED_KEY, _array_head(len(closed)), *closed))


#: How far before the event a preview of each AiTrados preview interval is pushed.
PREVIEW_AHEAD = {"30DAY": dt.timedelta(days=30), "2WEEK": dt.timedelta(weeks=2), "1WEEK": dt.timedelta(weeks=1),
                 "1DAY": dt.timedelta(days=1), "60M": dt.timedelta(minutes=60), "15M": dt.timedelta(minutes=15),
                 "5M": dt.timedelta(minutes=5)}


class MarketDataHub:
    """Chart flow + aligner + publishing, fed by an AiTrados WebSocket client and hydrated over HTTP.

    :param publisher: bus publisher (used only from the hub's event loop)
    :param http: async HTTP client of the provider (cloud or replay server)
    :param ws_url: WebSocket root of the same provider
    :param secret_key: the provider key (any non-empty value for the replay server)
    :param window_size: default chart window length N
    :param flow: the chart flow to use (a new one by default)
    :param push_encoding: ``msgpack`` asks the provider for binary ``ohlc`` pushes (our local replay server
        grants it; see :class:`~aitrados.marketdata.ws_client.AitradosWSClient`); ``json`` by default
    """

    def __init__(self, publisher: Publisher, http: AsyncAitradosHTTPClient, ws_url: str, secret_key: str, *,
                 window_size: int = 150, flow: ChartFlow | None = None, push_encoding: str = "json") -> None:
        self.pub = publisher
        self.http = http
        self.flow = flow or ChartFlow(default_size=window_size)
        self.ws = AitradosWSClient(ws_url, secret_key, http=http, on_bars=self._on_bars, on_news=self._on_news,
                                   on_event=self._on_event, on_replay_end=self._on_end, on_error=self._on_error,
                                   push_encoding=push_encoding)
        self.consumers: list[Consumer] = []
        self.ended = asyncio.Event()
        self.counts = {"bars_in": 0, "published": 0, "news": 0, "events": 0, "snapshots": 0, "steps": 0}
        self.step = 0
        self.step_time: dt.datetime | None = None
        self.last_error: BaseException | None = None
        self._subscribed: set[str] = set()
        #: Stream topics asked for through :meth:`subscribe_stream` (by kind), apart from the charts' own.
        self.stream_topics: dict[str, set[str]] = {"ohlc": set(), "news": set(), "event": set()}
        self._started_topics: dict[str, set[str]] = {"ohlc": set(), "news": set(), "event": set()}
        self._hydrating: dict[str, list[Bar]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        #: chart window -> its ohlc. and chart. topics and the constant parts of its chart. bodies
        self._outputs: dict[ChartWindow, tuple[str, str, tuple[bytes, bytes]]] = {}
        self._consumers_seen: list[Consumer] = []
        self._by_kind: dict[Kind, list[Consumer]] = {k: [] for k in Kind}

    # ------------------------------------------------------------------ lifecycle
    async def start(self, news: list[str] = (), events: list[str] = ()) -> None:  # type: ignore[assignment]
        """Connect the stream and subscribe news topics (``STOCK:US:*``) and calendar topics (``US:*``)."""
        await self.ws.start()
        if news:
            await self.ws.subscribe("news", list(news))
        if events:
            await self.ws.subscribe("event", list(events))
        self._started_topics["news"].update(self.ws.desired["news"])
        self._started_topics["event"].update(self.ws.desired["event"])

    async def stop(self) -> None:
        """Close the stream and the HTTP client."""
        await self.ws.close()
        await self.http.aclose()

    # ------------------------------------------------------------------ charts and groups
    async def add_chart(self, full_symbol: str, interval: str, size: int | None = None) -> dict[str, Any]:
        """Ensure a window exists; the first call hydrates it over HTTP and subscribes the stream.

        :returns: ``{"full_symbol", "interval", "size", "bars", "hydrated", "created"}``
        """
        fs, iv = self.flow.key(full_symbol, interval)
        # one hydration per symbol at a time: a window's hydrate() must not wipe bars another releases
        lock = self._locks.setdefault(fs, asyncio.Lock())
        async with lock:
            w, created = self.flow.add(fs, iv, size)
            hydrated = 0
            if created:
                try:
                    hydrated = await self._hydrate(w)
                except BaseException:
                    self.flow.remove(fs, iv)
                    raise
            return {"full_symbol": fs, "interval": iv, "size": w.size, "bars": len(w), "hydrated": hydrated,
                    "created": created}

    async def _hydrate(self, w: Any) -> int:
        """Fill *w* with N-1 closed bars, holding the symbol's stream meanwhile so no bar is lost."""
        fs = w.full_symbol
        self._hydrating.setdefault(fs, [])
        try:
            if fs not in self._subscribed:
                self._subscribed.add(fs)
                await self.ws.subscribe("ohlc", [fs])
            bars = await latest_closed_bars(self.http, fs, w.interval, w.size - 1)  # pages past 1000
            n = w.hydrate(bars)
            logger.debug("chart {} {}: hydrated {} closed bars", fs, w.interval, n)
        finally:
            # pushed while hydrating (kept even if hydration failed): stale ones are ignored by the windows
            for b in self._hydrating.pop(fs, []):
                await self._advance(b.close_datetime)
                await self._process_bar(b)
        return n

    async def add_group(self, name: str, members: dict[str, list[str]], size: int | None = None) -> dict[str, Any]:
        """Add an aligned group (creating and hydrating the member windows it needs)."""
        norm = {normalize_full_symbol(fs): list(ivs) for fs, ivs in members.items()}
        for fs, ivs in norm.items():
            for iv in ivs:
                await self.add_chart(fs, iv, size)
        start = self.step_time
        self.flow.add_group(name, norm, size, start=start)
        return {"group": name, "members": self.flow.aligner.groups()[name]}

    # ------------------------------------------------------------------ stream subscriptions
    async def subscribe_stream(self, kind: str, topics: list[str]) -> list[str]:
        """Add *topics* of *kind* (``ohlc``, ``news``, ``event``) to the one WebSocket session.

        Bars of an ``ohlc`` topic are then published on ``ohlc.<full_symbol>.<interval>`` as they
        stream, even without a chart window (a window of the same interval publishes them itself).
        :returns: the topics as the stream client normalised them
        """
        kind = self.ws._kind(kind)
        norm = [self.ws._norm(kind, t) for t in topics]
        self.stream_topics[kind].update(norm)
        await self.ws.subscribe(kind, norm)
        return norm

    async def unsubscribe_stream(self, kind: str, topics: list[str]) -> list[str]:
        """Drop *topics* of *kind* asked for through :meth:`subscribe_stream`; the WebSocket session
        keeps those the charts and the runtime's own news/calendar subscriptions still need.

        :returns: the topics unsubscribed from the session
        """
        kind = self.ws._kind(kind)
        norm = [self.ws._norm(kind, t) for t in topics]
        self.stream_topics[kind].difference_update(norm)
        needed = self._started_topics[kind] | (self._subscribed if kind == "ohlc" else set())
        drop = [t for t in norm if t not in needed]
        await self.ws.unsubscribe(kind, drop)
        return drop

    async def resubscribe_stream(self) -> dict[str, list[str]]:
        """Send the subscription of every topic the session should have again (after a server
        restart lost them, say); :returns: the topics re-sent, by kind."""
        sent = {}
        for kind, topics in self.ws.desired.items():
            if topics:
                await self.ws.subscribe(kind, sorted(topics))
                sent[kind] = sorted(topics)
        return sent

    def stream_subscriptions(self) -> dict[str, list[str]]:
        """The session's topics by kind, as the server last confirmed them (``show_subscribe``)."""
        return {kind: list(topics) for kind, topics in self.ws.server_topics.items()}

    def _stream_wanted(self, full_symbol: str) -> bool:
        for t in self.stream_topics["ohlc"]:
            if t == full_symbol or (t.endswith("*") and full_symbol.startswith(t[:-1])):
                return True
        return False

    # ------------------------------------------------------------------ stream
    async def _advance(self, t: dt.datetime | None) -> None:
        """Close the current time step when data time moves past it."""
        if t is None:
            return
        if self.step_time is None:
            self.step_time = t
        elif t > self.step_time:
            await self._end_step()
            self.step_time = t

    async def _end_step(self) -> None:
        self.step += 1
        self.counts["steps"] += 1
        self._publish(build_topic(Kind.STEP), {"step": self.step, "time": self.step_time})
        await self._emit(Kind.STEP, (self.step, self.step_time))

    async def _on_bars(self, bars: list[Bar]) -> None:
        """The bars of one pushed message (the replay server pushes one per time step), in one call.

        Each bar goes through exactly what one bar alone would (step, chart flow, consumers,
        publishing, in the same order), but the consumers that finish at once (the trading runtime
        without remote strategies, offloading or signal modules; progress; price history) are called
        without an ``await`` per bar. Their publications are held and sent together at the end (or
        before a consumer is waited for). A bar that fails is logged and reported (``last_error``); the
        others go on.
        """
        self._refresh_consumers()
        counts, hydrating, deliver, feed = self.counts, self._hydrating, self._deliver, self.flow.feed
        sole, deliver_update = self.flow.sole_window, self._deliver_update
        want_chart = bool(self._by_kind[_CHART])  # consumers are refreshed once a message, above
        with self.pub.batch():  # the message's publications leave together (see _emit_rest)
            for bar in bars:
                try:
                    counts["bars_in"] += 1
                    if hydrating:
                        held = hydrating.get(bar.full_symbol)
                        if held is not None:
                            held.append(bar)
                            continue
                    t = bar.close_datetime
                    if self.step_time is None or t > self.step_time:
                        await self._advance(t)
                    w = sole(bar)
                    if w is None:
                        await deliver(feed(bar))
                    else:  # what feed and _deliver do for one window outside aligned groups, without a FeedResult
                        ch = w.update(bar)
                        if ch is not _NONE:
                            await deliver_update(w, w.just_closed if ch is _CLOSED else (), want_chart)
                    if self.stream_topics["ohlc"]:
                        self._publish_stream_bar(bar)
                except Exception as exc:
                    logger.opt(exception=exc).error("market data hub: bar {} {} at {} failed", bar.full_symbol,
                                                    bar.interval, bar.datetime)
                    await self._on_error(exc)

    async def _process_bar(self, bar: Bar) -> None:
        self._refresh_consumers()
        await self._deliver(self.flow.feed(bar))
        if self.stream_topics["ohlc"]:
            self._publish_stream_bar(bar)

    def _publish_stream_bar(self, bar: Bar) -> None:
        """Publish *bar* on its ``ohlc.`` topic when a stream subscription asks for it and no window does."""
        if self._stream_wanted(bar.full_symbol) and self.flow.get(bar.full_symbol, bar.interval) is None:
            self._publish(build_topic(Kind.BAR, bar.full_symbol, bar.interval), bar)

    def _window_outputs(self, w: ChartWindow) -> tuple[str, str, tuple[bytes, bytes]]:
        """The ``ohlc.`` and ``chart.`` topics of window *w* and its :func:`_chart_parts` (built once per window)."""
        out = self._outputs.get(w)
        if out is None:
            out = self._outputs[w] = (build_topic(Kind.BAR, w.full_symbol, w.interval),
                                      build_topic(Kind.CHART, w.full_symbol, w.interval),
                                      _chart_parts(w.full_symbol, w.interval, w.size))
        return out

    async def _deliver(self, res: FeedResult) -> None:
        want_chart = bool(self._by_kind[Kind.CHART])
        for u in res.updates:
            await self._deliver_update(u.window, u.closed, want_chart)
        for snap in res.snapshots:
            self.counts["snapshots"] += 1
            self._publish(build_topic(Kind.MTF, snap.group), snap.to_record())
            await self._emit(Kind.MTF, snap)

    async def _deliver_update(self, w: ChartWindow, closed: tuple[Bar, ...], want_chart: bool) -> None:
        """Hand one change of window *w* on (*closed*: the bars it closed, oldest first): each closed bar
        to the consumers and then on ``ohlc.``; the live bar on ``ohlc.``; the ``chart.`` message, then
        to the ``chart`` consumers when *want_chart*."""
        publish_raw, encode, emit = self.pub.publish_raw, _encode, self._emit_now
        ohlc_topic, chart_topic, parts = self._outputs.get(w) or self._window_outputs(w)
        live = w.live_bar()  # built once per update (aggregating windows assemble it on demand)
        # each bar is encoded once: its ohlc message and the chart message embed the same bytes
        closed_raw: list[bytes] = []
        sent = 0
        try:
            for b in closed:
                r = emit(_BAR, b)  # first: fills at this bar are published before it
                if r is not None:
                    await r
                body = encode(b)
                publish_raw(ohlc_topic, body)
                sent += 1
                closed_raw.append(body)
            if live is not None:
                last = encode(live)
                publish_raw(ohlc_topic, last)
                sent += 1
            else:
                last = closed_raw[-1] if closed_raw else None
            count = w.closed_count + (live is not None)
            publish_raw(chart_topic, _chart_body(parts, w.seq, count, last, closed_raw))
            sent += 1
            if want_chart:  # the same message, its bars as Bars
                r = emit(_CHART, {"full_symbol": w.full_symbol, "interval": w.interval, "seq": w.seq,
                                      "size": w.size, "count": count, "last": live if live is not None else
                                      (closed[-1] if closed else None), "closed": list(closed)})
                if r is not None:
                    await r
        finally:
            self.counts["published"] += sent

    async def _on_news(self, item: NewsItem) -> None:
        self.counts["news"] += 1
        await self._advance(item.published_date)
        self._publish(build_topic(Kind.NEWS, item.full_symbol or ""), item)
        await self._emit(Kind.NEWS, item)

    async def _on_event(self, ev: CalendarEvent) -> None:
        self.counts["events"] += 1
        # a preview (the schedule ahead, outcome masked) arrives before its event: data time is the push time
        ahead = PREVIEW_AHEAD.get(ev.preview_interval or "", dt.timedelta(0))
        await self._advance(ev.event_timestamp - ahead)
        self._publish(build_topic(Kind.CALENDAR, ev.country_iso_code, ev.event_code), ev)
        await self._emit(Kind.CALENDAR, ev)

    async def _on_end(self, end: ReplayEnd) -> None:
        self._refresh_consumers()
        await self._deliver(self.flow.tick(end.clock))
        if self.step_time is not None:
            await self._end_step()
        record = {"clock": end.clock, "bars": self.counts["bars_in"], "step": self.step + 1}
        self._publish(build_topic(Kind.END), record)
        await self._emit(Kind.END, record)
        self.ended.set()

    async def _on_error(self, err: BaseException) -> None:
        self.last_error = err
        logger.error("market data stream: {}", err)

    def _publish(self, topic: str, obj: Any) -> None:
        self.pub.publish(topic, obj)
        self.counts["published"] += 1

    def _refresh_consumers(self) -> None:
        """Rebuild the per-kind consumer lists when ``consumers`` changed (checked once per pushed message
        and per other event; a consumer marked with :func:`aitrados.events.consumes` gets its kinds only)."""
        if self.consumers != self._consumers_seen:
            self._consumers_seen = list(self.consumers)
            self._by_kind = {k: [c for c in self._consumers_seen if k in getattr(c, "hub_kinds", _ALL_KINDS)]
                             for k in Kind}

    def _emit_now(self, kind: Kind, obj: Any) -> Awaitable[None] | None:
        """Hand one event to its consumers, in order. :returns: None when every consumer finished at once
        (plain consumers, and async ones that return None), else an awaitable that finishes the others
        (from the first consumer that returned one): await it before anything else happens."""
        cs = self._by_kind[kind]
        for i, c in enumerate(cs):
            try:
                r = c(kind, obj)
            except Exception as exc:
                self._consumer_failed(c, kind, exc)
                continue
            if r is not None and inspect.isawaitable(r):
                return self._emit_rest(r, c, cs[i + 1:], kind, obj)
        return None

    async def _emit_rest(self, pending: Awaitable[None], c: Consumer, rest: list[Consumer], kind: Kind,
                         obj: Any) -> None:
        self.pub.flush()  # a consumer is about to be waited for: what is held leaves first
        try:
            await pending
        except Exception as exc:
            self._consumer_failed(c, kind, exc)
        for c in rest:
            try:
                r = c(kind, obj)
                if r is not None and inspect.isawaitable(r):  # plain consumers return None
                    await r
            except Exception as exc:
                self._consumer_failed(c, kind, exc)

    @staticmethod
    def _consumer_failed(c: Consumer, kind: Kind, exc: Exception) -> None:
        logger.opt(exception=exc).error("market data consumer {} failed on a {} event: {}",
                                        getattr(c, "__qualname__", c), kind, exc)

    async def _emit(self, kind: Kind, obj: Any) -> None:
        self._refresh_consumers()
        r = self._emit_now(kind, obj)
        if r is not None:
            await r


def _topic_list(topics: Any) -> list[str]:
    """*topics* as a list of strings (one string is one topic); ``TypeError`` otherwise."""
    if isinstance(topics, str):
        return [topics]
    if not isinstance(topics, (list, tuple)) or not all(isinstance(t, str) and t.strip() for t in topics):
        raise TypeError("topics must be a list of non-empty strings")
    return list(topics)


class ChartService(Service):
    """RPC ``chart``: the shared chart windows (add/get hydrate once; later calls reuse)."""

    name = "chart"

    def __init__(self, hub: MarketDataHub) -> None:
        self._hub = hub

    async def add(self, full_symbol: str, interval: str, size: int | None = None) -> dict[str, Any]:
        """Create (and hydrate) a window, or return the existing one's info."""
        return await self._hub.add_chart(full_symbol, interval, size)

    async def window(self, full_symbol: str, interval: str, size: int | None = None,
                     closed_only: bool = False) -> list[Bar]:
        """The window's bars, oldest first (the live bar last unless *closed_only*); hydrates on first use."""
        await self._hub.add_chart(full_symbol, interval, size)
        w = self._hub.flow.get(full_symbol, interval)
        assert w is not None
        bars = w.closed_bars() if closed_only else w.bars()
        return bars[-size:] if size else bars

    def remove(self, full_symbol: str, interval: str) -> bool:
        """Drop a window; False if there was none."""
        return self._hub.flow.remove(full_symbol, interval)

    def list(self) -> list[dict[str, Any]]:
        """Every window: symbol, interval, size, bars held, sequence number."""
        return [{"full_symbol": w.full_symbol, "interval": w.interval, "size": w.size, "bars": len(w), "seq": w.seq}
                for w in self._hub.flow.windows.values()]

    async def subscribe(self, kind: str, topics: list[str]) -> list[str]:
        """Add stream topics (``kind`` ohlc, news or event) to the one WebSocket session; ohlc bars are
        then published on ``ohlc.*`` even without a window. :returns: the normalised topics"""
        return await self._hub.subscribe_stream(kind, _topic_list(topics))

    async def unsubscribe(self, kind: str, topics: list[str]) -> list[str]:
        """Drop stream topics added with ``subscribe`` (those charts still need stay on the session).
        :returns: the topics dropped from the session"""
        return await self._hub.unsubscribe_stream(kind, _topic_list(topics))

    async def resubscribe(self) -> dict[str, list[str]]:
        """Send every wanted stream subscription to the server again; :returns: them by kind."""
        return await self._hub.resubscribe_stream()

    def subscriptions(self) -> dict[str, list[str]]:
        """The WebSocket session's topics by kind (ohlc, news, event), as the server confirmed them."""
        return self._hub.stream_subscriptions()

    def provider(self) -> dict[str, str]:
        """Where this hub's market data comes from: ``{http_url, ws_url}`` (no key: it never leaves the process)."""
        return {"http_url": self._hub.http.base_url, "ws_url": self._hub.ws.url}

    def stats(self) -> dict[str, Any]:
        """Hub counters: bars in, messages published, steps, stream reconnects and backfilled bars."""
        ws = self._hub.ws
        return {**self._hub.counts, "reconnects": ws.reconnects, "backfilled": ws.backfilled,
                "http_requests": self._hub.http.requests_sent, "ended": self._hub.ended.is_set()}


class AlignService(Service):
    """RPC ``mtf``: named multi-symbol multi-timeframe groups."""

    name = "mtf"

    def __init__(self, hub: MarketDataHub) -> None:
        self._hub = hub
        self._last: dict[str, Snapshot] = {}
        hub.consumers.append(self._remember)

    @consumes(Kind.MTF)
    def _remember(self, kind: str, obj: Any) -> None:
        if kind == Kind.MTF:
            self._last[obj.group] = obj

    async def add_group(self, name: str, members: dict[str, list[str]], size: int | None = None) -> dict[str, Any]:
        """Add a group ``{full_symbol: [intervals]}`` under *name* (any name you like)."""
        return await self._hub.add_group(name, members, size)

    def remove_group(self, name: str) -> bool:
        """Remove a group; False if there was none."""
        self._last.pop(name, None)
        return self._hub.flow.remove_group(name)

    def get_group(self, name: str) -> dict[str, Any]:
        """A group's members, counters and latest snapshot (``None`` before the first)."""
        groups = self._hub.flow.aligner.groups()
        if name not in groups:
            raise KeyError(f"no group named {name!r}; groups: {', '.join(sorted(groups)) or 'none'}")
        last = self._last.get(name)
        return {"group": name, "members": groups[name], "stats": self._hub.flow.aligner.stats(name),
                "last": last.to_record() if last else None}

    def list_groups(self) -> dict[str, dict[str, list[str]]]:
        """Every group: ``{name: {full_symbol: [intervals]}}``."""
        return self._hub.flow.aligner.groups()
