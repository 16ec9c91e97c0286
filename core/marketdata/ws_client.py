"""WebSocket client of the AiTrados protocol (cloud or local replay server), on websockets.

:class:`AitradosWSClient` authenticates, subscribes to ``ohlc``/``news``/``event`` topics and
delivers typed records (:class:`Bar`, :class:`NewsItem`, :class:`CalendarEvent`,
:class:`ReplayEnd`) to callbacks or to ``async for record in client``.

When the connection drops it reconnects with exponential backoff, authenticates again and
re-subscribes everything; then it BACKFILLS over HTTP the bars closed during the outage, from the
last bar seen per symbol and at that bar's interval (the cloud pushes 1-minute bars; the replay
server pushes a file symbol's finest interval, e.g. DAY for the bundled daily data): pushes arriving
meanwhile are held back, and every bar is delivered once, in time order per symbol (a bar older
than, or equal to, the last delivered one of its symbol is dropped; an update of the same bar with
other values is delivered). A pushed record's ``interval`` field gives its :class:`Bar` interval.
Nothing fails silently: errors are logged and passed to ``on_error``; fatal ones (a bad key,
reconnect attempts exhausted) end the iterator with the exception.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import msgspec
from loguru import logger
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from .binary_push import PUSH_ENCODING, decode_ohlc_push
from .errors import AuthenticationError, MarketDataError, ProtocolError, scrub_secret
from .http_client import AsyncAitradosHTTPClient
from .intervals import normalize_interval
from .models import (
    Bar,
    CalendarEvent,
    NewsItem,
    bar_from_record,
    event_from_record,
    make_full_symbol,
    news_from_record,
    normalize_full_symbol,
    parse_timestamp,
)
from .settings import CLOUD_WS_URL, MarketDataSettings

__all__ = ["AitradosWSClient", "ReplayEnd", "ServerErrorMessage", "Record"]

_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder()
KINDS = ("ohlc", "news", "event")


class _Envelope(msgspec.Struct):
    """A pushed message with its ``result`` left encoded (read only to find ``ohlc`` pushes)."""

    message_type: str | None = None
    result: msgspec.Raw = msgspec.Raw(b"null")


class _PushedBar(msgspec.Struct):
    """The common shape of a pushed OHLC record, decoded in C; anything else takes ``bar_from_record``."""

    asset_schema: str
    country_iso_code: str
    symbol: str
    interval: str
    datetime: dt.datetime
    close_datetime: dt.datetime
    open: float
    high: float
    low: float
    close: float
    volume: float | None = None
    vwap: float | None = None
    closed: bool = True
    full_symbol: str | None = None


_envelope_dec = msgspec.json.Decoder(_Envelope)
_bars_dec = msgspec.json.Decoder(list[_PushedBar])
_UTC = dt.timezone.utc


#: Pushed (asset_schema, country, symbol) -> full symbol, and interval names -> canonical ones: the same
#: few values arrive with every message, so each is validated once (bounded: cleared when it grows past
#: _NAMES_MAX, e.g. a server that streams ever new symbols).
_full_symbols: dict[tuple[str, str, str], str] = {}
_intervals: dict[str, str] = {}
_NAMES_MAX = 100_000


def _full_symbol(parts: tuple[str, str, str]) -> str:
    if len(_full_symbols) >= _NAMES_MAX:
        _full_symbols.clear()
    fs = _full_symbols[parts] = make_full_symbol(*parts)
    return fs


def _interval(name: str) -> str:
    if len(_intervals) >= _NAMES_MAX:
        _intervals.clear()
    iv = _intervals[name] = normalize_interval(name)
    return iv


def fast_ohlc_bars(raw: str | bytes) -> list[Bar] | None:
    """The bars of an ``ohlc`` push whose records all have the usual shape, decoded in one pass in C
    (the same :class:`Bar` values as :func:`bar_from_record`); None for any other message or shape,
    which then takes the general path (and its error messages)."""
    try:
        env = _envelope_dec.decode(raw)
        if env.message_type != "ohlc":
            return None
        recs = _bars_dec.decode(env.result)
    except (msgspec.DecodeError, ValueError):
        return None
    out = []
    names, ivs = _full_symbols, _intervals
    for r in recs:
        if r.full_symbol is not None:
            return None  # an explicit full_symbol wins over the parts: the general path handles it
        parts = (r.asset_schema, r.country_iso_code, r.symbol)
        fs = names.get(parts) or _full_symbol(parts)
        iv = ivs.get(r.interval) or _interval(r.interval)
        t, tc = r.datetime, r.close_datetime
        out.append(Bar(fs, iv, t if t.tzinfo is _UTC else parse_timestamp(t),
                       tc if tc.tzinfo is _UTC else parse_timestamp(tc), r.open, r.high, r.low, r.close,
                       0.0 if r.volume is None else r.volume, r.vwap, r.closed))
    return out


class ReplayEnd(msgspec.Struct, frozen=True):
    """The replay server reached the end of its data (``message_type: replay_end``)."""

    clock: dt.datetime
    ticks: int = 0


class ServerErrorMessage(MarketDataError):
    """The server sent an ``error`` message (e.g. a topic it refused); passed to ``on_error``."""


Record = Bar | NewsItem | CalendarEvent | ReplayEnd
Callback = Callable[[Any], Awaitable[None] | None]
_STOP = object()


class AitradosWSClient:
    """Streaming client with reconnect, re-subscribe and HTTP backfill.

    :param url: WebSocket root (``ws://127.0.0.1:P`` or the cloud's ``wss://...``); ``/ws`` is
        appended unless already there. Default: the settings' ``ws_url``.
    :param secret_key: the key sent in ``authenticate`` (any non-empty value for a keyless replay server)
    :param http: HTTP client used for backfill (same server); None disables backfill (warned)
    :param on_bar, on_news, on_event, on_replay_end, on_error: callbacks (plain or async)
    :param on_bars: takes the bars of one pushed ``ohlc`` message (the replay server pushes one per
        time step: every symbol's bar of that minute) in one call, as a list, in place of ``on_bar``
        (bars delivered one by one, from a backfill or after a reconnect, come as lists of one)
    :param queue_records: also queue records for ``async for`` (default: when no record callback is given)
    :param max_reconnect_attempts: consecutive failed connects before giving up (None = no limit)
    :param settings: reconnect backoff bounds
    :param push_encoding: ``json`` (the protocol's, default) or ``msgpack``: ask the server for binary
        ``ohlc`` pushes (our local replay server grants it, see :mod:`aitrados.marketdata.binary_push`;
        a server that does not, the cloud included, keeps JSON). ``binary_pushes`` tells what was granted.

    Counters: ``reconnects``, ``backfilled`` (bars delivered from HTTP), ``duplicates`` (dropped).
    """

    def __init__(self, url: str | None = None, secret_key: str | None = None, *,
                 http: AsyncAitradosHTTPClient | None = None, on_bar: Callback | None = None,
                 on_news: Callback | None = None, on_event: Callback | None = None,
                 on_replay_end: Callback | None = None, on_error: Callback | None = None,
                 on_bars: Callback | None = None, queue_records: bool | None = None,
                 max_reconnect_attempts: int | None = None,
                 settings: MarketDataSettings | None = None, open_timeout: float = 10.0,
                 push_encoding: str = "json") -> None:
        s = settings or MarketDataSettings()
        if push_encoding not in ("json", PUSH_ENCODING):
            raise ValueError(f"push_encoding must be json or {PUSH_ENCODING}, got {push_encoding!r}")
        self.push_encoding = push_encoding
        #: True while the server sends ``ohlc`` pushes as binary msgpack frames (it granted ``push_encoding``).
        self.binary_pushes = False
        root = (url or s.ws_url or CLOUD_WS_URL).rstrip("/")
        if not root.startswith(("ws://", "wss://")):
            raise ValueError(f"WebSocket url must start with ws:// or wss://, got {root!r}")
        self.url = root if root.endswith("/ws") else root + "/ws"
        key = (secret_key or "").strip()
        if not key:
            raise AuthenticationError("no secret key: set AITRADOS_SECRET_KEY (any value works for the local replay server)")
        self._key = key
        self.http = http
        if on_bar is not None and on_bars is not None:
            raise ValueError("give on_bar or on_bars, not both")
        if on_bars is not None:
            on_bar = lambda bar: on_bars([bar])  # noqa: E731  (one bar at a time: backfill, after a reconnect)
        self._cb = {"ohlc": on_bar, "news": on_news, "event": on_event, "replay_end": on_replay_end}
        self._on_bars = on_bars
        self._on_error = on_error
        if queue_records is None:
            queue_records = not any((on_bar, on_news, on_event))
        self._queue: asyncio.Queue[Any] | None = asyncio.Queue() if queue_records else None
        self._max_reconnects = max_reconnect_attempts
        self._backoff0 = s.ws_reconnect_initial_backoff
        self._backoff_max = s.ws_reconnect_max_backoff
        self._open_timeout = open_timeout
        self.desired: dict[str, set[str]] = {k: set() for k in KINDS}
        self.server_topics: dict[str, list[str]] = {k: [] for k in KINDS}
        self.last_bar: dict[str, Bar] = {}
        self.reconnects = 0
        self.backfilled = 0
        self.duplicates = 0
        self.replay_ended = asyncio.Event()
        self.connected = asyncio.Event()
        self.error: BaseException | None = None
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._holding = False
        self._held: list[dict[str, Any]] = []
        self._sub_confirm: dict[str, asyncio.Event] = {k: asyncio.Event() for k in KINDS}
        if http is None:
            logger.warning("WS client without an HTTP client: bars missed during a reconnect cannot be backfilled")

    # ------------------------------------------------------------------ public API

    async def start(self) -> None:
        """Connect and authenticate (raises :class:`AuthenticationError` for a bad key), then run
        the receive loop in the background (reconnecting as needed)."""
        try:
            ws = await self._connect()
        except (OSError, InvalidHandshake, TimeoutError) as e:
            raise MarketDataError(f"cannot connect to {self.url} ({type(e).__name__}: {e}); is the server "
                                  "running and the url right (marketdata.ws_url)?") from e
        self._task = asyncio.get_running_loop().create_task(self._run(ws), name="aitrados-ws")

    async def close(self) -> None:
        """Close the connection and stop reconnecting; ends ``async for``."""
        self._closing = True
        if self._ws is not None:
            await self._ws.close()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 5)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
            except Exception:  # already surfaced through on_error / the iterator
                pass
        if self._queue is not None:
            self._queue.put_nowait(_STOP)

    async def __aenter__(self) -> AitradosWSClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def subscribe(self, kind: str, topics: Iterable[str]) -> None:
        """Subscribe ``topics`` of ``kind`` (``ohlc``, ``news`` or ``event``); remembered for reconnects."""
        kind = self._kind(kind)
        ts = [self._norm(kind, t) for t in topics]
        self.desired[kind].update(ts)
        await self._send_sub("subscribe", kind, ts)

    async def unsubscribe(self, kind: str, topics: Iterable[str]) -> None:
        """Unsubscribe ``topics`` of ``kind``."""
        kind = self._kind(kind)
        ts = [self._norm(kind, t) for t in topics]
        self.desired[kind].difference_update(ts)
        await self._send_sub("unsubscribe", kind, ts)

    async def subscribe_ohlc(self, *full_symbols: str) -> None:
        """Subscribe the bar stream of symbols (``STOCK:US:AAPL``, wildcards ``STOCK:US:*``): 1-minute
        bars from the cloud; from the replay server each symbol's streamed interval (1M, or DAY for
        the bundled daily data; the record's ``interval`` says which)."""
        await self.subscribe("ohlc", full_symbols)

    async def subscribe_news(self, *full_symbols: str) -> None:
        """Subscribe news of symbols."""
        await self.subscribe("news", full_symbols)

    async def subscribe_event(self, *topics: str) -> None:
        """Subscribe economic events (``US:*``, ``US:NONFARM_PAYROLLS:REAL_TIME``)."""
        await self.subscribe("event", topics)

    async def wait_subscribed(self, kind: str, timeout: float = 10.0) -> list[str]:
        """Wait for the server's ``show_subscribe`` of ``kind``; :returns: the server's list."""
        kind = self._kind(kind)
        await asyncio.wait_for(self._sub_confirm[kind].wait(), timeout)
        return self.server_topics[kind]

    def __aiter__(self) -> AsyncIterator[Record]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Record]:
        if self._queue is None:
            raise RuntimeError("this client delivers to callbacks; create it with queue_records=True to iterate")
        while True:
            item = await self._queue.get()
            if item is _STOP:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _kind(kind: str) -> str:
        k = kind.lower()
        if k not in KINDS:
            raise ValueError(f"subscribe type {kind!r} is not one of {', '.join(KINDS)}")
        return k

    @staticmethod
    def _norm(kind: str, topic: str) -> str:
        t = topic.strip().upper()
        if kind != "event" and not t.endswith("*"):
            t = normalize_full_symbol(t)
        return t

    async def _send_sub(self, mtype: str, kind: str, topics: list[str]) -> None:
        ws = self._ws
        if ws is None or not topics:
            return  # sent after (re)connect
        self._sub_confirm[kind].clear()
        try:
            await ws.send(_enc.encode({"message_type": mtype, "params": {"subscribe_type": kind, "topics": topics}}), text=True)
        except ConnectionClosed:
            pass  # re-sent after reconnect

    async def _emit(self, kind: str, item: Any) -> None:
        cb = self._cb.get(kind)
        if cb is not None:
            try:
                r = cb(item)
                if inspect.isawaitable(r):
                    await r
            except Exception as e:
                logger.exception("WS client: {} callback raised", kind)
                await self._report(e)
        if self._queue is not None:
            self._queue.put_nowait(item)

    async def _report(self, err: BaseException) -> None:
        if self._on_error is None:
            return
        try:
            r = self._on_error(err)
            if inspect.isawaitable(r):
                await r
        except Exception:
            logger.exception("WS client: on_error callback raised")

    def _fresh(self, bar: Bar) -> bool:
        """True (and *bar* remembered as its symbol's last) unless it is older than, or equal to, the last delivered."""
        last = self.last_bar.get(bar.full_symbol)
        if last is not None and (bar.datetime < last.datetime or (bar.datetime == last.datetime and bar == last)):
            self.duplicates += 1
            return False
        self.last_bar[bar.full_symbol] = bar
        return True

    async def _deliver_bar(self, bar: Bar) -> bool:
        if not self._fresh(bar):
            return False
        await self._emit("ohlc", bar)
        return True

    async def _deliver_bars(self, bars: list[Bar]) -> None:
        """A pushed message's bars: in one ``on_bars`` call when given (one await per message), else one by one."""
        if self._on_bars is None:
            for bar in bars:
                await self._deliver_bar(bar)
            return
        fresh = [b for b in bars if self._fresh(b)]
        if not fresh:
            return
        try:
            r = self._on_bars(fresh)
            if inspect.isawaitable(r):
                await r
        except Exception as e:
            logger.exception("WS client: ohlc callback raised")
            await self._report(e)
        if self._queue is not None:
            for b in fresh:
                self._queue.put_nowait(b)

    # ------------------------------------------------------------------ connection

    async def _connect(self) -> ClientConnection:
        try:
            ws = await connect(self.url, max_size=2**20, ping_interval=20, ping_timeout=20,
                               open_timeout=self._open_timeout)
        except InvalidURI as e:
            raise ValueError(f"bad WebSocket url {self.url!r}: {e}") from None
        try:
            params = {"secret_key": self._key}
            if self.push_encoding != "json":  # only asked for: the protocol's authenticate has the key alone
                params["push_encoding"] = self.push_encoding
            await ws.send(_enc.encode({"message_type": "authenticate", "params": params}), text=True)
            raw = await asyncio.wait_for(ws.recv(), self._open_timeout)
            msg = _dec.decode(raw)
            result = msg.get("result") if isinstance(msg, dict) else None
            if not isinstance(result, dict) or not result.get("authenticated"):
                why = scrub_secret(str(msg.get("message") if isinstance(msg, dict) else raw), self._key)
                raise AuthenticationError(f"{self.url}: authentication refused ({why}); set AITRADOS_SECRET_KEY "
                                          "to a valid key, or use the local replay provider")
            self.binary_pushes = self.push_encoding != "json" and result.get("push_encoding") == self.push_encoding
        except BaseException:
            await ws.close()
            raise
        self._ws = ws
        self.connected.set()
        for kind in KINDS:
            if self.desired[kind]:
                self._sub_confirm[kind].clear()
                await ws.send(_enc.encode({"message_type": "subscribe", "params": {
                    "subscribe_type": kind, "topics": sorted(self.desired[kind])}}), text=True)
        return ws

    async def _run(self, ws: ClientConnection) -> None:
        """Receive until the connection drops; reconnect, re-subscribe, backfill; repeat."""
        fatal: BaseException | None = None
        try:
            reconnected = False
            while True:
                if not reconnected:
                    await self._receive(ws)
                else:
                    self._holding = True
                    reader = asyncio.get_running_loop().create_task(self._receive(ws), name="aitrados-ws-recv")
                    try:
                        await self._after_reconnect(reader)
                    finally:
                        await self._release()
                    await reader
                self._ws = None
                self.connected.clear()
                if self._closing:
                    return
                new = await self._reconnect()
                if new is None:
                    return
                ws, reconnected = new, True
        except asyncio.CancelledError:
            raise
        except BaseException as e:
            fatal = e
            self.error = e
            logger.error("WS client stopped: {}", scrub_secret(str(e), self._key))
            await self._report(e)
        finally:
            self._ws = None
            self.connected.clear()
            if self._queue is not None:
                self._queue.put_nowait(fatal if fatal is not None else _STOP)

    async def _receive(self, ws: ClientConnection) -> None:
        """Handle messages until the connection closes (a drop is logged, not raised)."""
        try:
            async for raw in ws:
                try:
                    if type(raw) is bytes:  # a binary frame: an ohlc push, when this session asked for them
                        if not self.binary_pushes:
                            raise ValueError("a binary frame, but this session did not ask for binary pushes")
                        await self._handle_bars(decode_ohlc_push(raw))
                        continue
                    bars = fast_ohlc_bars(raw)
                    if bars is not None:
                        await self._handle_bars(bars)
                        continue
                    await self._handle(_dec.decode(raw))
                except (msgspec.DecodeError, ValueError, TypeError, KeyError) as e:
                    err = ProtocolError(f"{self.url}: bad message from server ({type(e).__name__}: {e}): {str(raw)[:200]}")
                    logger.warning("{}", err)
                    await self._report(err)
        except ConnectionClosed as e:
            if not self._closing:
                logger.warning("WS connection to {} lost ({}); reconnecting", self.url, e)

    async def _handle(self, msg: Any) -> None:
        if not isinstance(msg, dict):
            raise ValueError("message is not a JSON object")
        mtype = msg.get("message_type")
        result = msg.get("result")
        if mtype == "ohlc" and isinstance(result, list):
            await self._handle_bars([bar_from_record(rec) for rec in result])
        elif mtype in ("news", "event") and isinstance(result, list):
            build = news_from_record if mtype == "news" else event_from_record
            for rec in result:
                item = build(rec)
                if self._holding:
                    self._held.append((mtype, item))
                else:
                    await self._emit(mtype, item)
        elif mtype == "show_subscribe" and isinstance(result, dict):
            for key, topics in result.items():
                kind = str(key).split(":")[0].lower()
                if kind in KINDS:
                    self.server_topics[kind] = list(topics or [])
                    self._sub_confirm[kind].set()
        elif mtype == "error":
            err = ServerErrorMessage(f"server error: {msg.get('message')} - {msg.get('detail')}",
                                     code=msg.get("code"), detail=msg.get("detail"))
            logger.warning("WS {}", err)
            await self._report(err)
        elif mtype == "replay_end":
            res = result if isinstance(result, dict) else {}
            end = ReplayEnd(parse_timestamp(res.get("clock") or dt.datetime.now(dt.timezone.utc)), int(res.get("ticks") or 0))
            if self._holding:
                self._held.append(("replay_end", end))
            else:
                self._finish_replay(end)
                await self._emit("replay_end", end)
        else:
            logger.debug("WS message of type {!r} ignored", mtype)

    async def _handle_bars(self, bars: list[Bar]) -> None:
        if self._holding:
            self._held.extend(("ohlc", bar) for bar in bars)
        else:
            await self._deliver_bars(bars)

    def _finish_replay(self, end: ReplayEnd) -> None:
        logger.debug("replay ended at {}", end.clock)
        self.replay_ended.set()

    async def _release(self) -> None:
        """Deliver what arrived during the backfill, then deliver live again."""
        while self._held:
            batch, self._held = self._held, []
            for kind, item in batch:
                if kind == "ohlc":
                    await self._deliver_bar(item)
                else:
                    if kind == "replay_end":
                        self._finish_replay(item)
                    await self._emit(kind, item)
        self._holding = False

    async def _after_reconnect(self, reader: asyncio.Task[None]) -> None:
        """Wait for the re-subscription to be confirmed, then backfill the outage over HTTP."""
        if self.desired["ohlc"]:
            confirm = asyncio.get_running_loop().create_task(self._sub_confirm["ohlc"].wait())
            done, _ = await asyncio.wait({confirm, reader}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
            if confirm not in done:
                confirm.cancel()
                if reader in done:
                    return  # dropped again: the next reconnect backfills
                logger.warning("WS: no show_subscribe within 10 s after re-subscribing; backfilling anyway")
        await self._backfill()

    async def _backfill(self) -> None:
        if self.http is None or not self.last_bar:
            return
        pats = self.desired["ohlc"]
        for fs, last in list(self.last_bar.items()):
            if not any(p == fs or (p.endswith("*") and fs.startswith(p[:-1])) for p in pats):
                continue
            iv = last.interval  # the interval this symbol streams (1M from the cloud; DAY for daily replay data)
            start = last.datetime + dt.timedelta(minutes=1)  # every interval is at least a minute long
            end = max(dt.datetime.now(dt.timezone.utc), start) + dt.timedelta(days=1)
            try:
                bars = await self.http.ohlc_history(fs, iv, start, end)
            except MarketDataError as e:
                logger.error("WS backfill of {} {} after {} failed: {}; {} bars of the outage may be missing",
                             fs, iv, last.datetime.isoformat(), e, iv)
                await self._report(e)
                continue
            n = 0
            for b in bars:
                if b.interval == iv and await self._deliver_bar(b):
                    n += 1
            self.backfilled += n
            if n:
                logger.info("WS backfill: {} {} bars of {} from {}", n, iv, fs, start.isoformat())

    async def _reconnect(self) -> ClientConnection | None:
        """Reconnect with exponential backoff; None when closing.

        :raises AuthenticationError: the key was refused (retrying would not help)
        :raises MarketDataError: ``max_reconnect_attempts`` consecutive failures
        """
        delay = self._backoff0
        attempt = 0
        while not self._closing:
            attempt += 1
            await asyncio.sleep(delay)
            if self._closing:
                return None
            try:
                ws = await self._connect()
            except AuthenticationError:
                raise
            except (OSError, InvalidHandshake, ConnectionClosed, TimeoutError) as e:
                logger.warning("WS reconnect attempt {} to {} failed: {}", attempt, self.url, e)
                if self._max_reconnects is not None and attempt >= self._max_reconnects:
                    raise MarketDataError(f"{self.url}: gave up after {attempt} reconnect attempts ({e}); "
                                          "check the server, or raise max_reconnect_attempts") from None
                delay = min(self._backoff_max, max(delay * 2, 0.05))
                continue
            self.reconnects += 1
            logger.info("WS reconnected to {} (attempt {}); re-subscribed", self.url, attempt)
            return ws
        return None
