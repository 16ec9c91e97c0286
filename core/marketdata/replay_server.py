"""The local replay server: the AiTrados HTTP and WebSocket protocol on 127.0.0.1, from local data.

One asyncio ``websockets`` server on one port answers plain HTTP GETs (``/api/v2/...``, the
alias ``/api/api/v2/...`` and ``/replay/...``) in ``process_request`` and upgrades ``/ws`` to
the WebSocket protocol of §3 (authenticate, subscribe/unsubscribe with ``show_subscribe``
replies, ``ohlc``/``news``/``event`` pushes). A :class:`~aitrados.marketdata.clock.ReplayClock`
drives the pushes in time order; after the last one every connection receives
``{"message_type": "replay_end", ...}`` and ``GET /replay/state`` reports ``ended: true``.

Run it: ``python -m aitrados.marketdata.replay_server --port 0`` (prints the real port), or
:class:`ReplayServerThread` from sync code, or ``async with ReplayServer(...)``.
See docs/replay.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import email.utils
import hmac
import http
import logging
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import msgspec
from loguru import logger
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from .binary_push import PUSH_ENCODING, encode_ohlc_push
from .clock import ReplayClock, Tick, Timeline
from .errors import UnknownSymbolError
from .models import Bar, format_timestamp, normalize_full_symbol
from .replay_api import ApiError, ReplayAPI, _topic_match, error_body, ok
from .replay_store import (
    ReplayStore,
    event_record,
    news_record,
    ws_bar_record,
)
from .settings import MarketDataSettings

__all__ = ["ReplayServer", "ReplayServerThread", "main"]

_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder()
SUB_KEYS = {"ohlc": "ohlc:1m", "news": "news", "event": "event"}
MAX_RECORDS_PER_PUSH = 500  # keeps one push well under the clients' 1 MiB frame limit
#: Most rejected topics listed one by one in a subscribe error (the rest are counted), so the
#: error frame stays far below the clients' 1 MiB limit however many topics were sent.
MAX_LISTED_BAD_TOPICS = 20
#: Longest text of one rejected topic's reason in a subscribe error.
MAX_BAD_TOPIC_TEXT = 300
# websockets' own logger: warnings only (its debug lines would show request targets, keys included)
_WS_LOG = logging.getLogger("aitrados.replay.websockets")
_WS_LOG.setLevel(logging.WARNING)


def _envelope(message_type: str, result: Any, message: str = "success") -> dict[str, Any]:
    return {"message_type": message_type, "status": "ok", "code": 200, "message": message,
            "reference": None, "result": result}


def _ws_error(message: str, detail: Any = None, code: int = 400) -> dict[str, Any]:
    return {"message_type": "error", "status": "error", "code": code, "message": message,
            "reference": None, "detail": detail}


@dataclass(eq=False)
class _Session:
    """One authenticated WebSocket connection: its subscriptions (start empty) and its own send
    queue of ``(frame, is_text)``, drained by its own writer task so a client that stops reading
    holds up nobody else. ``binary``: the client asked for msgpack ``ohlc`` pushes
    (:mod:`aitrados.marketdata.binary_push`)."""

    conn: ServerConnection
    queue_size: int = 256
    binary: bool = False
    subs: dict[str, set[str]] = field(default_factory=lambda: {"ohlc": set(), "news": set(), "event": set()})
    match_cache: dict[tuple[str, str], bool] = field(default_factory=dict)
    queue: asyncio.Queue[tuple[bytes, bool]] = field(init=False)
    writer: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue(self.queue_size)

    async def write(self) -> None:
        """Send queued frames in order until the connection closes."""
        try:
            while True:
                frame, text = await self.queue.get()
                await self.conn.send(frame, text=text)
        except ConnectionClosed:
            pass

    def wants(self, kind: str, key: str) -> bool:
        ck = (kind, key)
        hit = self.match_cache.get(ck)
        if hit is None:
            pats = self.subs[kind]
            hit = key in pats or any("*" in p and _topic_match(p, key) for p in pats)
            self.match_cache[ck] = hit
        return hit

    def wants_event(self, key: str) -> bool:
        """Real-time events match as topics do; a preview (``US:CPI:1DAY``) only a pattern naming
        its preview interval (``US:*:1DAY``), so plain ``US:*`` subscribers see each event once."""
        if key.endswith(":REAL_TIME"):
            return self.wants("event", key)
        pi = key.rsplit(":", 1)[1]
        return any(p.count(":") == 2 and p.rsplit(":", 1)[1] == pi and _topic_match(p, key) for p in self.subs["event"])


#: How far ahead the replay server pushes an event's preview (``preview_interval: 1DAY``).
PREVIEW_AHEAD = dt.timedelta(days=1)


@dataclass
class _Failure:
    remaining: int
    status: int
    endpoint: str | None


class ReplayServer:
    """The replay server (asyncio). Bind with :meth:`start`, stop with :meth:`stop`, or use
    ``async with``.

    :param settings: market-data settings (replay_* fields); keyword arguments override them
    :param store: a prepared :class:`ReplayStore` (default: built from the settings)
    :param secret_key: require this key (HTTP ``secret_key`` / WS authenticate); None = any key
    :param host, port: bind address (127.0.0.1, 0 = free port; see :attr:`port` after start)
    :param speed: clock speed (1 = real time, N = N×, 0 = as fast as possible)
    :param autostart: ``immediately``, ``first_subscribe`` or ``manual`` (:meth:`start_clock`,
        ``GET /replay/start``)
    :param autostart_grace: with ``first_subscribe``: the clock starts once no subscription has come in
        for this many real seconds (so symbols subscribed one after another all get their first pushes)
    :param end: end of the replay window (a time or ``"data_end"``); default from the settings

    Attributes for tests and tools: ``api.counts`` (requests per endpoint), ``pushed`` (records
    pushed per kind), ``ended`` (end of data reached), ``clock``.
    """

    def __init__(self, settings: MarketDataSettings | None = None, *, store: ReplayStore | None = None,
                 secret_key: str | None = None, host: str | None = None, port: int | None = None,
                 speed: float | None = None, autostart: str | None = None,
                 start: dt.datetime | None = None, end: dt.datetime | str | None = None,
                 autostart_grace: float | None = None) -> None:
        s = settings or MarketDataSettings()
        self.settings = s
        self.host = host or s.replay_host
        self._want_port = s.replay_port if port is None else port
        self.secret_key = secret_key if secret_key is not None else s.replay_secret_key
        #: Token for ``/replay/start|pause|resume`` when no secret key is set (the key works when one is).
        self.control_token = s.replay_control_token or secrets.token_urlsafe(18)
        #: WebSocket clients disconnected because their queue stayed full (they stopped reading).
        self.slow_disconnects = 0
        self.autostart = autostart or s.replay_autostart
        if self.autostart not in ("immediately", "first_subscribe", "manual"):
            raise ValueError(f"autostart {self.autostart!r} is not immediately, first_subscribe or manual")
        self.autostart_grace = s.replay_autostart_grace if autostart_grace is None else float(autostart_grace)
        self.store = store or ReplayStore(
            start=start or s.replay_start, days=s.replay_days, history_days=s.replay_history_days,
            seed=s.replay_seed, generated_symbols=s.replay_symbols, generate_any=s.replay_generate_any,
            bar_files=s.replay_bar_files, news_files=s.replay_news_files,
            calendar_files=s.replay_calendar_files, holiday_files=s.replay_holiday_files,
            bundled=s.replay_bundled, end=end if end is not None else s.replay_end)
        self.clock = ReplayClock(self.store.start, s.replay_speed if speed is None else speed)
        self.api = ReplayAPI(self.store, self.clock.now, self.secret_key, self._address_info)
        self.timeline = Timeline()
        self._build_timeline()
        self.pushed: Counter[str] = Counter()
        self.ticks_sent = 0
        #: Level of the "listening" and "replay ended" lines (the middleware sets DEBUG in a backtest).
        self.routine_level = "INFO"
        self.ended = False
        self.pump_error: str | None = None
        self._sessions: set[_Session] = set()
        self._failures: list[_Failure] = []
        self._rate = s.replay_rate_limit_per_second
        self._tokens = self._rate or 0.0
        self._token_t = time.monotonic()
        self._server: Server | None = None
        self._pump_task: asyncio.Task[None] | None = None
        self._ended_event: asyncio.Event | None = None
        self._last_tick: Tick | None = None
        self._grace_task: asyncio.Task[None] | None = None
        self._last_subscribe = 0.0
        self._progress_every = s.replay_progress_every
        self.port = 0

    # ------------------------------------------------------------------ data → timeline

    def _build_timeline(self) -> None:
        """Every push of the replay, in time order: ``ohlc`` ticks hold the :class:`Bar` s themselves (each
        session gets them as JSON records or, when it asked, as a binary push: see :meth:`_dispatch`),
        news and event ticks their JSON records."""
        bars = self.store.stream_bars()
        self.timeline.add((b.close_datetime, "ohlc", b) for b in bars)
        start, end = self.store.start, self.store.end
        self.timeline.add((n.published_date, "news", news_record(n)) for n in self.store.news
                          if start < n.published_date <= end)
        self.timeline.add((e.event_timestamp, "event", {**event_record(e), "preview_interval": "REAL_TIME"})
                          for e in self.store.events if start < e.event_timestamp <= end)
        # previews: the schedule one day ahead, outcome masked, for subscriptions that name `1DAY`
        self.timeline.add((e.event_timestamp - PREVIEW_AHEAD, "event",
                           {**event_record(e, asof=e.event_timestamp - PREVIEW_AHEAD), "preview_interval": "1DAY"})
                          for e in self.store.events if start < e.event_timestamp - PREVIEW_AHEAD <= end)

    def _add_stream_symbol(self, fs: str) -> None:
        """Put a symbol generated on demand into the rest of the replay."""
        now, end = self.clock.now(), self.store.end
        self.timeline.add((b.close_datetime, "ohlc", b) for b in self.store.minute_bars(fs)
                          if now < b.close_datetime <= end)

    # ------------------------------------------------------------------ lifecycle

    @property
    def http_url(self) -> str:
        """``http://127.0.0.1:<port>`` (give this as the HTTP client's base_url)."""
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        """``ws://127.0.0.1:<port>`` (the WS client appends ``/ws``)."""
        return f"ws://{self.host}:{self.port}"

    def _address_info(self) -> dict[str, Any]:
        return {"http_url": self.http_url, "ws_url": self.ws_url + "/ws", "replay": True}

    async def start(self) -> None:
        """Bind and serve; logs the addresses. Starts the clock when ``autostart='immediately'``."""
        self._ended_event = asyncio.Event()
        self._server = await serve(self._ws_handler, self.host, self._want_port,
                                   process_request=self._process_request, logger=_WS_LOG,
                                   max_size=2**20, ping_interval=20, ping_timeout=20,
                                   compression=None)  # loopback: deflate would only cost CPU on both ends
        sock = next(iter(self._server.sockets))
        self.port = sock.getsockname()[1]
        logger.log(self.routine_level, "replay server listening: HTTP {}/api/v2/  WS {}/ws  (clock {} .. {} speed {}, {} symbols, {} ticks)",
                    self.http_url, self.ws_url, format_timestamp(self.clock.now()), format_timestamp(self.store.end),
                    "max" if self.clock.as_fast_as_possible else f"x{self.clock.speed:g}",
                    len(self.store.symbols()), len(self.timeline))
        if self.autostart == "immediately":
            self.start_clock()

    async def stop(self) -> None:
        """Stop the pump, close every connection and the listening socket."""
        if self._grace_task is not None:
            self._grace_task.cancel()
        if self._pump_task is not None:
            self._pump_task.cancel()
            try:
                await self._pump_task
            except (asyncio.CancelledError, Exception):
                pass
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> ReplayServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def serve_forever(self) -> None:
        """Run until cancelled."""
        if self._server is None:
            await self.start()
        assert self._server is not None
        await self._server.serve_forever()

    def start_clock(self) -> None:
        """Start the replay clock and the push loop (idempotent). Call it on the server's loop
        (``ReplayServerThread.start_clock()`` from another thread; ``GET /replay/start`` remotely)."""
        if self._pump_task is None:
            self.clock.begin()
            self._pump_task = asyncio.get_running_loop().create_task(self._pump(), name="replay-pump")

    def _subscribed(self) -> None:
        """``first_subscribe``: start the clock once subscriptions have been quiet for the grace period."""
        self._last_subscribe = time.monotonic()
        if self._pump_task is not None or self._grace_task is not None:
            return
        if self.autostart_grace <= 0:
            self.start_clock()
            return

        async def after_grace() -> None:
            while (wait := self._last_subscribe + self.autostart_grace - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            self.start_clock()

        self._grace_task = asyncio.get_running_loop().create_task(after_grace(), name="replay-autostart")

    async def wait_ended(self, timeout: float | None = None) -> bool:
        """Wait for the end of data; :returns: True when it was reached within ``timeout``."""
        assert self._ended_event is not None, "start() the server first"
        try:
            await asyncio.wait_for(self._ended_event.wait(), timeout)
            return True
        except TimeoutError:
            return False

    def inject_failures(self, count: int, status: int = 500, endpoint: str | None = None) -> None:
        """Answer the next ``count`` API requests (of ``endpoint``, e.g. ``ohlc_history``, or any)
        with HTTP ``status`` instead of data: for testing client retries and 429 handling."""
        self._failures.append(_Failure(count, status, endpoint))

    def drop_connections(self) -> int:
        """Abort every WebSocket connection at the TCP level (no close handshake), as a network
        failure would: for testing client reconnects. :returns: how many were dropped."""
        n = 0
        for sess in list(self._sessions):
            sess.conn.transport.abort()
            self._sessions.discard(sess)
            n += 1
        return n

    def state(self) -> dict[str, Any]:
        """The replay state: clock, speed, progress, end-of-data flag, request counters."""
        return {
            "clock": format_timestamp(self.clock.now()),
            "start": format_timestamp(self.store.start),
            "end": format_timestamp(self.store.end),
            "speed": self.clock.speed,
            "running": self.clock.running,
            "ended": self.ended,
            "ticks_sent": self.ticks_sent,
            "ticks_total": len(self.timeline),
            "pushed": dict(self.pushed),
            "connections": len(self._sessions),
            "symbols": self.store.symbols(),
            "requests": dict(self.api.counts),
            "requests_by_symbol": dict(self.api.symbol_counts),
            "data_issues": len(self.store.issues),
            "error": self.pump_error,
        }

    # ------------------------------------------------------------------ HTTP

    @staticmethod
    def _response(status: int, body: bytes, content_type: str = "application/json",
                  extra: dict[str, str] | None = None) -> Response:
        st = http.HTTPStatus(status)
        headers = Headers([("Date", email.utils.formatdate(usegmt=True)), ("Connection", "close"),
                           ("Content-Length", str(len(body))), ("Content-Type", content_type)])
        for k, v in (extra or {}).items():
            headers[k] = v
        return Response(st.value, st.phrase, headers, body)

    def _rate_ok(self) -> bool:
        if not self._rate:
            return True
        now = time.monotonic()
        self._tokens = min(self._rate, self._tokens + (now - self._token_t) * self._rate)
        self._token_t = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        target = request.path
        path = target.split("?", 1)[0]
        if path == "/ws":
            if "upgrade" not in request.headers.get("Connection", "").lower():
                return self._response(426, _enc.encode(error_body(426, "/ws is the WebSocket endpoint; connect with a WebSocket client")))
            return None
        if path.startswith(("/replay/", "/api/v2/replay/")):
            return self._replay_control(path.rsplit("/", 1)[-1], target)
        endpoint = self.api.endpoint_of(target)
        for f in self._failures:
            if f.remaining > 0 and (f.endpoint is None or f.endpoint == endpoint):
                f.remaining -= 1
                msg = "rate limit exceeded (injected)" if f.status == 429 else f"injected failure {f.status}"
                return self._response(f.status, _enc.encode(error_body(f.status, msg, {"error": "injected"})),
                                      extra={"Retry-After": "1"} if f.status == 429 else None)
        if not self._rate_ok():
            return self._response(429, _enc.encode(error_body(429, "rate limit exceeded: slow down", {"error": "rate_limited"})),
                                  extra={"Retry-After": "1"})
        try:
            status, body, ctype = self.api.handle(target)
        except Exception as e:  # a bug, not bad input: log it with the endpoint (never the key)
            logger.exception("replay server: {} request failed", endpoint or "unknown")
            body = _enc.encode(error_body(500, f"internal error in the replay server: {type(e).__name__}: {e}",
                                          {"error": "internal"}))
            return self._response(500, body)
        return self._response(status, body, ctype)

    def _replay_control(self, action: str, target: str) -> Response:
        from urllib.parse import parse_qsl, urlsplit

        q = dict(parse_qsl(urlsplit(target).query))
        key_ok = self.secret_key is not None and hmac.compare_digest(q.get("secret_key", ""), self.secret_key)
        if self.secret_key is not None and not key_ok:
            return self._response(401, _enc.encode(error_body(401, "invalid secret_key", {"error": "bad_secret_key"})))
        if action != "state" and not key_ok and not hmac.compare_digest(q.get("token", ""), self.control_token):
            return self._response(401, _enc.encode(error_body(
                401, f"/replay/{action} needs the server's secret_key, or token=<control token> when no key is set "
                     "(setting marketdata.replay_control_token; ReplayServer.control_token)", {"error": "bad_token"})))
        if action == "start":
            self.start_clock()
        elif action == "pause":
            self.clock.pause()
        elif action == "resume":
            self.clock.begin()
        elif action != "state":
            return self._response(404, _enc.encode(error_body(404, f"unknown replay action {action!r}: use state, start, pause or resume", {"error": "not_found"})))
        return self._response(200, _enc.encode(ok(self.state())))

    # ------------------------------------------------------------------ WebSocket

    async def _send(self, conn: ServerConnection, msg: dict[str, Any]) -> None:
        """Send *msg* directly (only before a session exists: the authentication answer)."""
        await conn.send(_enc.encode(msg), text=True)

    async def _queue(self, sess: _Session, msg: dict[str, Any]) -> bool:
        """Queue *msg* (JSON text) for *sess*; returns False when the session is gone or was dropped as too slow.

        A full queue makes the replay wait for that client (lossless replays need every subscriber),
        but never longer than ``replay_ws_slow_timeout``: then the client is disconnected and counted.
        """
        if sess not in self._sessions:
            return False
        return await self._queue_frame(sess, (_enc.encode(msg), True))

    async def _queue_frame(self, sess: _Session, frame: tuple[bytes, bool]) -> bool:
        """Queue an encoded ``(frame, is_text)`` for *sess* (see :meth:`_queue`)."""
        if sess not in self._sessions:
            return False
        try:
            sess.queue.put_nowait(frame)
            return True
        except asyncio.QueueFull:
            pass
        try:
            await asyncio.wait_for(sess.queue.put(frame), self.settings.replay_ws_slow_timeout)
            return True
        except TimeoutError:
            self._drop_slow(sess)
            return False

    def _drop_slow(self, sess: _Session) -> None:
        self._sessions.discard(sess)
        self.slow_disconnects += 1
        logger.warning("replay server: a WebSocket client kept {} messages unread for {} s; disconnecting it",
                       sess.queue.maxsize, self.settings.replay_ws_slow_timeout)
        if sess.writer is not None:
            sess.writer.cancel()
        sess.conn.transport.abort()  # no close handshake: it would queue behind the unread data

    async def _ws_handler(self, conn: ServerConnection) -> None:
        try:
            raw = await asyncio.wait_for(conn.recv(), timeout=30)
        except (TimeoutError, ConnectionClosed):
            return
        try:
            msg = _dec.decode(raw)
        except msgspec.DecodeError:
            msg = None
        if not isinstance(msg, dict) or msg.get("message_type") != "authenticate":
            await self._send(conn, {**_envelope("authenticate", {"authenticated": False},
                                                "the first message must be authenticate"), "status": "error", "code": 401})
            await conn.close(1008, "authenticate first")
            return
        params = msg.get("params") or {}
        key = str(params.get("secret_key") or "").strip() if isinstance(params, dict) else ""
        good = bool(key) and (self.secret_key is None or key == self.secret_key)
        if not good:
            await self._send(conn, {**_envelope("authenticate", {"authenticated": False}, "invalid secret_key"),
                                    "status": "error", "code": 401})
            await conn.close(1008, "invalid secret_key")
            return
        # our own client may ask for binary ohlc pushes; any other value (or none) keeps JSON, unechoed
        binary = isinstance(params, dict) and params.get("push_encoding") == PUSH_ENCODING
        await self._send(conn, _envelope("authenticate", {"authenticated": True, "push_encoding": PUSH_ENCODING}
                                         if binary else {"authenticated": True}))
        sess = _Session(conn, self.settings.replay_ws_queue, binary=binary)
        sess.writer = asyncio.get_running_loop().create_task(sess.write(), name="replay-ws-writer")
        self._sessions.add(sess)
        try:
            async for raw in conn:
                await self._on_message(sess, raw)
        except ConnectionClosed:
            pass
        except Exception:
            logger.exception("replay server: WebSocket session failed; closing it")
            await conn.close(1011, "internal error")
        finally:
            self._sessions.discard(sess)
            if sess.writer is not None:
                sess.writer.cancel()
            while not sess.queue.empty():  # frees a push waiting for room in this queue at once
                sess.queue.get_nowait()

    def _check_topic(self, kind: str, topic: str) -> str:
        t = topic.strip().upper()
        if kind == "event":
            parts = t.split(":")
            if not 2 <= len(parts) <= 3 or not all(parts):
                raise ValueError(f"event topic {topic!r} is not COUNTRY:EVENT_CODE:PREVIEW_INTERVAL (e.g. US:*, US:*:REAL_TIME)")
            return ":".join("REAL_TIME" if p == "REALTIME" else p for p in parts)
        if t.endswith(":*") and t.count(":") == 2:
            normalize_full_symbol(t[:-1] + "X")  # validates asset and country
            return t
        fs = normalize_full_symbol(t)
        if kind == "ohlc":
            known = fs in self.store.symbols()
            fs = self.store.resolve(fs)  # UnknownSymbolError unless generate_any
            if not known:
                self._add_stream_symbol(fs)
        return fs

    async def _on_message(self, sess: _Session, raw: str | bytes) -> None:
        try:
            msg = _dec.decode(raw)
            if not isinstance(msg, dict):
                raise ValueError("not an object")
        except (msgspec.DecodeError, ValueError):
            await self._queue(sess, _ws_error("message is not a JSON object", {"received": str(raw)[:200]}))
            return
        mtype = msg.get("message_type")
        if mtype == "show_subscribe":
            for kind in ("ohlc", "event", "news"):
                await self._queue(sess, _envelope("show_subscribe", {SUB_KEYS[kind]: sorted(sess.subs[kind])}))
            return
        if mtype not in ("subscribe", "unsubscribe"):
            await self._queue(sess, _ws_error(f"unknown message_type {mtype!r}: use subscribe, unsubscribe or show_subscribe"))
            return
        params = msg.get("params") if isinstance(msg.get("params"), dict) else {}
        kind = str(params.get("subscribe_type") or "ohlc").lower()
        if kind not in SUB_KEYS:
            await self._queue(sess, _ws_error(f"subscribe_type {kind!r} is not ohlc, news or event"))
            return
        topics = params.get("topics")
        if not isinstance(topics, list):
            await self._queue(sess, _ws_error("params.topics must be a JSON array of topics"))
            return
        bad: list[str] = []
        for topic in topics:
            try:
                t = self._check_topic(kind, str(topic))
            except UnknownSymbolError as e:
                bad.append(f"{topic}: no replay data (available: {', '.join(e.available)})")
                continue
            except ValueError as e:
                bad.append(str(e))
                continue
            if mtype == "subscribe":
                sess.subs[kind].add(t)
            else:
                sess.subs[kind].discard(t)
        sess.match_cache.clear()
        if bad:
            listed = [b[:MAX_BAD_TOPIC_TEXT] for b in bad[:MAX_LISTED_BAD_TOPICS]]
            await self._queue(sess, _ws_error(f"{len(bad)} of {len(topics)} topics were not {mtype}d",
                                              {"topics": listed, "not_listed": len(bad) - len(listed)}))
        await self._queue(sess, _envelope("show_subscribe", {SUB_KEYS[kind]: sorted(sess.subs[kind])}))
        if mtype == "subscribe":
            if self.ended:
                await self._queue(sess, self._end_message())
            elif self.autostart == "first_subscribe":
                self._subscribed()

    # ------------------------------------------------------------------ the push loop

    def _end_message(self) -> dict[str, Any]:
        return _envelope("replay_end", {"clock": format_timestamp(self.clock.now()), "ticks": self.ticks_sent,
                                        "pushed": dict(self.pushed)}, "end of replay data")

    async def _dispatch(self, tick: Tick) -> None:
        """Push *tick* to every session subscribed to some of it, in chunks of ``MAX_RECORDS_PER_PUSH``:
        ``ohlc`` bars as JSON records (built once per tick, when a JSON session wants them) or as one
        binary frame per chunk for a session that asked for it."""
        kind = tick.kind
        recs = tick.records
        if kind == "ohlc":
            await self._dispatch_bars(tick.records)  # type: ignore[arg-type]  (ohlc ticks hold Bars)
            return
        if kind == "news":
            keys = [(r.get("full_symbol") or "") for r in recs]
        else:
            keys = [f"{r['country_iso_code']}:{r['event_code']}:{r.get('preview_interval') or 'REAL_TIME'}"
                    for r in recs]
        for sess in list(self._sessions):
            if not sess.subs[kind]:
                continue
            want = sess.wants_event if kind == "event" else (lambda k, _kind=kind, _s=sess: _s.wants(_kind, k))
            mine = [r for r, k in zip(recs, keys) if want(k)]
            for i in range(0, len(mine), MAX_RECORDS_PER_PUSH):
                chunk = mine[i:i + MAX_RECORDS_PER_PUSH]
                if not await self._queue(sess, _envelope(kind, chunk)):
                    break
                self.pushed[kind] += len(chunk)

    async def _dispatch_bars(self, bars: list[Bar]) -> None:
        records: list[dict[str, Any]] | None = None  # the JSON records, built on first need
        keys = [b.full_symbol for b in bars]
        for sess in list(self._sessions):
            if not sess.subs["ohlc"]:
                continue
            want = sess.wants
            idx = [i for i, k in enumerate(keys) if want("ohlc", k)]
            if not sess.binary and records is None and idx:
                records = [ws_bar_record(b) for b in bars]
            for i in range(0, len(idx), MAX_RECORDS_PER_PUSH):
                chunk = idx[i:i + MAX_RECORDS_PER_PUSH]
                if sess.binary:
                    frame = (encode_ohlc_push([bars[j] for j in chunk]), False)
                else:
                    assert records is not None
                    frame = (_enc.encode(_envelope("ohlc", [records[j] for j in chunk])), True)
                if not await self._queue_frame(sess, frame):
                    break
                self.pushed["ohlc"] += len(chunk)

    async def _pump(self) -> None:
        """Push every tick when the clock reaches it; then signal the end of data."""
        total = len(self.timeline)
        last_log = time.monotonic()
        tick = self.timeline.first_after(self.clock.now())
        try:
            while tick is not None:
                await self.clock.wait_until(tick.due)
                await self._dispatch(tick)
                self._last_tick = tick
                self.ticks_sent += 1
                if self.clock.as_fast_as_possible and self.ticks_sent % 64 == 0:
                    await asyncio.sleep(0)  # let HTTP requests and subscriptions in
                now = time.monotonic()
                if now - last_log >= self._progress_every:
                    last_log = now
                    pos = self.timeline.position(tick)
                    logger.info("replay progress: clock {} tick {}/{} ({:.0f}%), pushed {}",
                                format_timestamp(tick.due), pos, len(self.timeline),
                                100.0 * pos / max(1, len(self.timeline)), dict(self.pushed))
                tick = self.timeline.next_after(tick)
            await self.clock.wait_until(self.store.end)
            self.clock.freeze(self.store.end if not self.clock.as_fast_as_possible else self.clock.now())
            self.ended = True
            logger.log(self.routine_level, "replay ended at {}: {} ticks of {}, pushed {}", format_timestamp(self.clock.now()),
                        self.ticks_sent, total, dict(self.pushed))
            end = self._end_message()
            for sess in list(self._sessions):
                try:
                    await self._queue(sess, end)
                except ConnectionClosed:
                    pass
        except asyncio.CancelledError:
            raise
        except Exception as e:  # never die silently: log, expose in state, end the replay
            self.pump_error = f"{type(e).__name__}: {e}"
            logger.exception("replay push loop failed; the replay is stopped")
            self.ended = True
            for sess in list(self._sessions):
                try:
                    await self._queue(sess, _ws_error(f"replay stopped by a server error: {self.pump_error}",
                                                          {"error": "internal"}, 500))
                except ConnectionClosed:
                    pass
        finally:
            if self._ended_event is not None and self.ended:
                self._ended_event.set()


class ReplayServerThread:
    """A :class:`ReplayServer` running in its own thread and event loop, for sync code and tests.

    ``with ReplayServerThread(speed=0) as srv: srv.http_url ...``; keyword arguments go to
    :class:`ReplayServer`. ``call(coro_fn)`` runs a coroutine function on the server's loop.
    """

    def __init__(self, settings: MarketDataSettings | None = None, **kwargs: Any) -> None:
        self._settings = settings
        self._kwargs = kwargs
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.server: ReplayServer | None = None
        self._stop: asyncio.Event | None = None
        #: Level of the server's "listening" and "replay ended" lines (``ReplayServer.routine_level``).
        self.routine_level = "INFO"

    def start(self, timeout: float = 30.0) -> ReplayServerThread:
        """Start the thread and wait until the server listens."""
        self._thread = threading.Thread(target=self._run, name="replay-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"replay server did not start within {timeout} s")
        if self._error is not None:
            raise RuntimeError(f"replay server failed to start: {self._error}") from self._error
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as e:  # reported to start() or logged
            if not self._ready.is_set():
                self._error = e
                self._ready.set()
            else:
                logger.exception("replay server thread failed")
        finally:
            loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        self.server = ReplayServer(self._settings, **self._kwargs)
        self.server.routine_level = self.routine_level
        await self.server.start()
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self.server.stop()

    def call(self, fn: Any, *args: Any, timeout: float = 30.0) -> Any:
        """Run ``fn(*args)`` (a function or coroutine function) on the server loop; :returns: its result."""
        assert self._loop is not None

        async def wrapper() -> Any:
            r = fn(*args)
            return await r if asyncio.iscoroutine(r) else r

        return asyncio.run_coroutine_threadsafe(wrapper(), self._loop).result(timeout)

    def start_clock(self, timeout: float = 10.0) -> None:
        """Start the replay clock now (thread-safe): for ``autostart='manual'`` once every
        subscription is in place."""
        assert self.server is not None, "start() the thread first"
        self.call(self.server.start_clock, timeout=timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server and join the thread."""
        if self._loop is not None and self._stop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def http_url(self) -> str:
        """The server's HTTP base URL."""
        assert self.server is not None
        return self.server.http_url

    @property
    def ws_url(self) -> str:
        """The server's WebSocket base URL (without ``/ws``)."""
        assert self.server is not None
        return self.server.ws_url

    def __enter__(self) -> ReplayServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m aitrados.marketdata.replay_server [--port 0] [--speed 0] ...``."""
    p = argparse.ArgumentParser(description="Serve local market data over the AiTrados HTTP+WS protocol on 127.0.0.1.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 = pick a free port (printed)")
    p.add_argument("--speed", type=float, default=None, help="1 = real time, N = N times, 0 = as fast as possible")
    p.add_argument("--start", default=None, help="replay clock start, ISO 8601 (naive = UTC)")
    p.add_argument("--days", type=float, default=None, help="days of replay after the start")
    p.add_argument("--end", default=None, help="replay end, ISO 8601 (naive = UTC), or data_end (last bar of the files)")
    p.add_argument("--autostart", choices=["immediately", "first_subscribe", "manual"], default=None)
    p.add_argument("--autostart-grace", type=float, default=None,
                   help="first_subscribe: start once subscriptions were quiet this many seconds (default 0.3)")
    p.add_argument("--bars", nargs="*", default=[], help="CSV/Parquet bar files")
    p.add_argument("--news", nargs="*", default=[], help="news JSON/CSV files")
    p.add_argument("--calendar", nargs="*", default=[], help="calendar JSON/CSV files")
    p.add_argument("--symbols", nargs="*", default=None, help="symbols with generated 1-minute bars")
    p.add_argument("--secret-key", default=None, help="require this key (default: any key)")
    a = p.parse_args(argv)
    over: dict[str, Any] = {"replay_host": a.host, "replay_port": a.port, "replay_bar_files": a.bars,
                            "replay_news_files": a.news, "replay_calendar_files": a.calendar}
    if a.speed is not None:
        over["replay_speed"] = a.speed
    if a.start:
        over["replay_start"] = a.start
    if a.days:
        over["replay_days"] = a.days
    if a.end:
        over["replay_end"] = a.end
    if a.autostart:
        over["replay_autostart"] = a.autostart
    if a.autostart_grace is not None:
        over["replay_autostart_grace"] = a.autostart_grace
    if a.symbols is not None:
        over["replay_symbols"] = a.symbols
    settings = MarketDataSettings(**over)

    async def run() -> None:
        server = ReplayServer(settings, secret_key=a.secret_key)
        await server.start()
        print(f"replay server: {server.http_url}  ws: {server.ws_url}/ws", flush=True)
        await server.serve_forever()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
