"""The dashboard server: the live page, its WebSocket stream and ``/metrics``.

:class:`DashboardServer` runs in its own thread and event loop, as a plain bus client of the
middleware: it subscribes to ``ohlc.``, ``fill.``, ``order.``, ``news.``, ``calendar.`` and
``replay.``, polls status over RPC a few times a second (account, positions, working orders,
risk, strategy state, services, topics, plugins), folds both into a
:class:`~aitrados.dashboard.state.DashboardState`, and pushes one coalesced JSON delta per
frame to every connected page. HTTP and WebSocket are served by the ``websockets`` server
the package already uses.

It never slows the middleware because of a browser: each page has a bounded queue of
frames; a page that falls that far behind is disconnected (it reconnects and gets a fresh
snapshot), and a closed page is simply forgotten.

Access: a one-time token (printed in the link logged at start, as Jupyter does) sets a
session cookie; the WebSocket needs that cookie and a same-origin ``Origin``. ``/metrics``
is open on loopback, token-protected otherwise. Binding beyond loopback without a token is
refused.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import secrets
import socket
import threading
import time
from http import HTTPStatus
from http.cookies import SimpleCookie
from importlib.resources import files
from typing import Any
from urllib.parse import parse_qs, urlsplit

import zmq
from loguru import logger
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from ..bus.client import AsyncRPCClient
from ..bus.errors import BusError
from ..bus.pubsub import AsyncSubscriber
from .metrics import Metrics
from .state import DashboardState, jsonable

__all__ = ["DashboardServer", "is_loopback"]

COOKIE = "aitrados_dashboard"
TOPICS = ("ohlc.", "fill.", "order.", "news.", "calendar.", "replay.")
_STATIC = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
           "style.css": "text/css; charset=utf-8",
           "vendor/lightweight-charts.standalone.production.js": "text/javascript; charset=utf-8",
           "vendor/lightweight-charts.LICENSE": "text/plain; charset=utf-8"}


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _static(name: str) -> bytes:
    return files("aitrados.dashboard").joinpath("static", name).read_bytes()


class _Page:
    """One connected page: its socket and its bounded queue of frames."""

    def __init__(self, ws: ServerConnection, size: int) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize=size)


class DashboardServer:
    """Serves the dashboard of a middleware reachable at *rpc_address* / *sub_address*.

    :param rpc_address: RPC frontend to connect to (inproc inside the middleware)
    :param sub_address: pub/sub subscribe address
    :param host: interface to bind (loopback by default)
    :param port: TCP port (0 = any free one; see ``port`` after ``start()``)
    :param token: access token; None makes a random one; ``""`` disables it (loopback only)
    :param operator_token: the bus's operator token, sent with ``trading.trip``/``reset``
    :param context: ZeroMQ context (the middleware's, for inproc)
    :param bus: bus settings (curve keys, timeouts)
    :param fps: frames per second pushed to pages at most
    :param poll_interval: seconds between status polls over RPC
    :param queue_size: frames a page may fall behind before it is disconnected
    :param send_buffer: kernel send buffer per page, bytes (fixed, so a page that stops reading holds at
        most this plus ``queue_size`` frames before it is disconnected)
    """

    def __init__(self, rpc_address: str, sub_address: str, *, host: str = "127.0.0.1", port: int = 0,
                 token: str | None = None, operator_token: str | None = None, context: zmq.Context | None = None,
                 bus: Any = None, fps: float = 10.0, poll_interval: float = 0.25, queue_size: int = 64,
                 send_buffer: int = 256 * 1024) -> None:
        if token == "" and not is_loopback(host):
            raise ValueError(f"refusing to serve the dashboard on {host} without a token: bind 127.0.0.1 "
                             "or keep the token (the default)")
        self.rpc_address, self.sub_address = rpc_address, sub_address
        self.host, self.port = host, port
        self.token = secrets.token_urlsafe(24) if token is None else token
        self.operator_token = operator_token
        self.context = context or zmq.Context.instance()
        self.bus = bus
        self.fps, self.poll_interval, self.queue_size = fps, poll_interval, queue_size
        self.send_buffer = send_buffer
        self.state = DashboardState()
        self.metrics = Metrics(self._metrics_read)
        self.pages: set[_Page] = set()
        self.counters = {"pages": 0, "dropped_slow": 0, "frames": 0, "commands": 0, "poll_errors": 0}
        self.failure: BaseException | None = None
        self._sub: AsyncSubscriber | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._backfilled: set[tuple[str, str]] = set()

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        """The page's address without the token."""
        h = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{h}:{self.port}/"

    @property
    def login_url(self) -> str:
        """The page's address with the one-time token (what is logged at start)."""
        return f"{self.url}?token={self.token}" if self.token else self.url

    def start(self, timeout: float = 10.0) -> DashboardServer:
        """Bind and start serving in a thread; raises when the port cannot be bound."""
        self._thread = threading.Thread(target=self._thread_main, name="aitrados-dashboard", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"the dashboard did not start within {timeout:g}s")
        if self.failure is not None:
            raise self.failure
        logger.info("dashboard: {}", self.login_url)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Close every page and stop the server thread."""
        loop, ev = self._loop, self._stop
        if loop is not None and ev is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(ev.set)
            except RuntimeError:
                pass
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> DashboardServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _thread_main(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # noqa: BLE001 - kept in `failure` and logged, never silent
            self.failure = exc
            if self._ready.is_set():
                logger.exception("dashboard server stopped by an error: {}", exc)
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._sub = AsyncSubscriber(self.sub_address, TOPICS, bus=self.bus, context=self.context)
        self._rpc = self._client(None)
        self._op = self._client(self.operator_token)
        try:
            async with serve(self._handler, self.host, self.port, process_request=self._http,
                             max_size=2**16, ping_interval=20, ping_timeout=20, close_timeout=2) as server:
                self.port = _bound_port(server, self.port)
                self._ready.set()
                tasks = [asyncio.ensure_future(c) for c in (self._read_bus(), self._tick(), self._poll())]
                stop = asyncio.ensure_future(self._stop.wait())
                done, _ = await asyncio.wait({stop, *tasks}, return_when=asyncio.FIRST_COMPLETED)
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                for t in done:
                    if t is not stop and not t.cancelled() and t.exception() is not None:
                        raise t.exception()  # type: ignore[misc]
        finally:
            stop_sub = self._sub
            self._sub = None
            stop_sub.close()
            self._rpc.close()
            self._op.close()

    def _client(self, token: str | None) -> AsyncRPCClient:
        kw: dict[str, Any] = {"bus": self.bus, "context": self.context, "timeout": 5.0}
        if token:
            kw["token"] = token  # the operator token: trading.trip/reset need it
        return AsyncRPCClient(self.rpc_address, **kw)

    # ------------------------------------------------------------------ bus and polls
    async def _read_bus(self) -> None:
        assert self._sub is not None
        feed = self.state.feed
        while True:
            m = await self._sub.recv()
            if m is not None:
                feed(m.topic, m.data)

    async def _call(self, client: AsyncRPCClient, service: str, method: str, **params: Any) -> Any:
        t0 = time.perf_counter()
        try:
            r = await client.call(service, method, **params)
        except BusError:
            self.metrics.probe_errors.labels(service).inc()
            raise
        self.metrics.probe.labels(service).observe(time.perf_counter() - t0)
        return r

    async def _poll(self) -> None:
        calls = {"services": ("middleware", "services", {}), "stats": ("middleware", "stats", {}),
                 "topics": ("middleware", "topics", {}), "plugins": ("plugins", "status", {}),
                 "account": ("trading", "account", {}), "positions": ("trading", "positions", {}),
                 "orders": ("trading", "orders", {"status": "accepted"}), "risk": ("trading", "risk_state", {}),
                 "strategies": ("trading", "strategy_state", {})}
        while True:
            status: dict[str, Any] = {}
            for key, (svc, method, params) in calls.items():
                known = set(status.get("services") or ()) | {"middleware"}  # "services" is polled first
                if svc not in known:
                    continue
                try:
                    status[key] = jsonable(await self._call(self._rpc, svc, method, **params))
                except BusError as exc:
                    self.counters["poll_errors"] += 1
                    status.setdefault("errors", {})[key] = f"{type(exc).__name__}: {exc}"
            status["dashboard"] = {**self.counters, "pages": len(self.pages)}
            self.state.set_status(status)
            if "chart" in (status.get("services") or {}):
                await self._backfill()
            await asyncio.sleep(self.poll_interval)

    async def _backfill(self) -> None:
        """Load the bars a chart window already holds (hydrated history) once per new (symbol, interval)."""
        try:
            for w in await self._call(self._rpc, "chart", "list"):
                fs, iv = w["full_symbol"], w["interval"]
                if (fs, iv) in self._backfilled:
                    continue
                self._backfilled.add((fs, iv))
                for b in await self._call(self._rpc, "chart", "window", full_symbol=fs, interval=iv):
                    self.state.feed(f"ohlc.{fs}.{iv}", b)
        except BusError as exc:
            self.counters["poll_errors"] += 1
            logger.debug("dashboard: chart backfill failed: {}", exc)

    async def _tick(self) -> None:
        period = 1.0 / self.fps
        while True:
            await asyncio.sleep(period)
            if not self.pages:
                self.state.take_delta()  # nobody to tell: keep only the totals
                continue
            delta = self.state.take_delta()
            if delta is None:
                continue
            text = json.dumps(delta, allow_nan=False)
            self.counters["frames"] += 1
            for page in list(self.pages):
                self._offer(page, text)

    def _offer(self, page: _Page, text: str) -> None:
        try:
            page.queue.put_nowait(text)
        except asyncio.QueueFull:
            self.counters["dropped_slow"] += 1
            self.pages.discard(page)
            logger.warning("dashboard: a page fell {} frames behind; disconnected (it reloads a snapshot)",
                           self.queue_size)
            asyncio.ensure_future(page.ws.close(1013, "too slow: reload"))

    def _metrics_read(self) -> tuple[dict[str, Any], dict[str, Any]]:
        sub = self._sub
        gaps = sub.gaps_by_topic() if sub is not None else {}
        st = self.state
        return st.status, {"gaps_by_topic": gaps, "fills": st.counts["fills"], "order_status": st.order_status,
                           "step": st.clock.get("step", 0)}

    # ------------------------------------------------------------------ HTTP
    def _authorised(self, request: Request) -> bool:
        if not self.token:
            return True
        q = parse_qs(urlsplit(request.path).query).get("token", [""])[0]
        if q and hmac.compare_digest(q, self.token):
            return True
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer ") and hmac.compare_digest(auth[7:], self.token):
            return True
        c = SimpleCookie()
        try:
            c.load(request.headers.get("Cookie", ""))
        except Exception:  # noqa: BLE001 - a malformed cookie is no cookie
            return False
        m = c.get(COOKIE)
        return m is not None and hmac.compare_digest(m.value, self.token)

    def _origin_ok(self, request: Request) -> bool:
        origin = request.headers.get("Origin")
        if origin is None:
            return True
        host = request.headers.get("Host", "")
        return urlsplit(origin).netloc == host

    def _http(self, conn: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path == "/ws":
            if not self._authorised(request):
                return _response(HTTPStatus.FORBIDDEN, b"open the link with the token logged at start\n")
            if not self._origin_ok(request):
                return _response(HTTPStatus.FORBIDDEN, b"cross-origin WebSocket refused\n")
            return None
        if path == "/metrics":
            if not is_loopback(self.host) and not self._authorised(request):
                return _response(HTTPStatus.FORBIDDEN, b"send the token: Authorization: Bearer TOKEN\n")
            return _response(HTTPStatus.OK, self.metrics.render(), "text/plain; version=0.0.4; charset=utf-8")
        if path.startswith("/static/"):
            name = path[len("/static/"):]
            if name not in _STATIC:
                return _response(HTTPStatus.NOT_FOUND, b"not found\n")
            return _response(HTTPStatus.OK, _static(name), _STATIC[name], cache=True)
        if path in ("/", "/index.html"):
            if not self._authorised(request):
                return _response(HTTPStatus.FORBIDDEN,
                                 b"aitrados dashboard: open the link with ?token=... logged when the middleware started\n")
            extra = [("Set-Cookie", f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/")] if self.token else []
            return _response(HTTPStatus.OK, _static("index.html"), _STATIC["index.html"], headers=extra)
        return _response(HTTPStatus.NOT_FOUND, b"not found\n")

    # ------------------------------------------------------------------ WebSocket
    async def _handler(self, ws: ServerConnection) -> None:
        page = _Page(ws, self.queue_size)
        sock = ws.transport.get_extra_info("socket")
        if sock is not None and self.send_buffer:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.send_buffer)
        self.counters["pages"] += 1
        page.queue.put_nowait(json.dumps(self.state.snapshot(), allow_nan=False))
        self.pages.add(page)
        sender = asyncio.ensure_future(self._send_loop(page))
        try:
            async for raw in ws:
                reply = await self._command(raw)
                self._offer(page, json.dumps(reply, allow_nan=False))
        except ConnectionClosed:
            pass
        finally:
            self.pages.discard(page)
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)

    async def _send_loop(self, page: _Page) -> None:
        try:
            while True:
                await page.ws.send(await page.queue.get())
        except ConnectionClosed:
            pass

    async def _command(self, raw: str | bytes) -> dict[str, Any]:
        """Run one page command (``{"op": "trip"|"reset", "reason": ...}``); returns the answer for the page."""
        self.counters["commands"] += 1
        try:
            cmd = json.loads(raw)
            op = cmd.get("op") if isinstance(cmd, dict) else None
            if op == "trip":
                reason = str(cmd.get("reason") or "tripped from the dashboard")[:200]
                risk = await self._call(self._op, "trading", "trip", reason=reason)
            elif op == "reset":
                risk = await self._call(self._op, "trading", "reset")
            else:
                return {"type": "answer", "ok": False, "error": f"unknown command {op!r}; use trip or reset"}
        except ValueError as exc:
            return {"type": "answer", "ok": False, "error": f"not JSON: {exc}"}
        except BusError as exc:
            return {"type": "answer", "ok": False, "op": op, "error": f"{type(exc).__name__}: {exc}"}
        logger.warning("dashboard: kill switch {} from the page", "tripped" if op == "trip" else "reset")
        self.state.set_status({**self.state.status, "risk": jsonable(risk)})
        return {"type": "answer", "ok": True, "op": op, "risk": jsonable(risk)}


def _bound_port(server: Server, default: int) -> int:
    for sock in server.sockets:
        return int(sock.getsockname()[1])
    return default


def _response(status: HTTPStatus, body: bytes, ctype: str = "text/plain; charset=utf-8", *,
              cache: bool = False, headers: list[tuple[str, str]] | None = None) -> Response:
    h = Headers([("Content-Type", ctype), ("Content-Length", str(len(body))),
                 ("Cache-Control", "max-age=3600" if cache else "no-store"),
                 ("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer")])
    for k, v in headers or []:
        h[k] = v
    return Response(status.value, status.phrase, h, body)
