"""A page that stops reading is disconnected; one that vanishes is forgotten; the others and the bus go on."""

from __future__ import annotations

import datetime as dt
import socket
import time

import pytest
from websockets.sync.client import connect

from aitrados.dashboard import DashboardServer
from aitrados.middleware import Middleware

pytestmark = pytest.mark.timeout(120)
T0 = dt.datetime(2024, 1, 2, tzinfo=dt.timezone.utc)


def ws_url(d: DashboardServer) -> str:
    return d.url.replace("http", "ws") + "ws"


def test_a_page_that_never_reads_is_dropped_while_a_reading_page_and_the_bus_go_on(mw: Middleware) -> None:
    ep = mw.endpoints()
    d = DashboardServer(ep.rpc_frontend, ep.subscribe, context=mw.context, bus=mw.bus, fps=50, queue_size=2).start()
    pub = mw.publisher()
    try:
        cookie = {"Cookie": f"aitrados_dashboard={d.token}"}
        slow = silent_page(d)
        with connect(ws_url(d), additional_headers=cookie) as good:
            run_until_dropped(d, mw, pub, slow, good)
        slow.close()
    finally:
        pub.close()
        d.stop()


def silent_page(d: DashboardServer) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads (a frozen browser tab)."""
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.settimeout(10)
    raw.connect(("127.0.0.1", d.port))
    raw.sendall((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{d.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                 f"Cookie: aitrados_dashboard={d.token}\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = raw.recv(1)
        assert chunk, "the server closed the handshake"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return raw


def run_until_dropped(d: DashboardServer, mw: Middleware, pub, slow: socket.socket, good) -> None:  # noqa: ANN001
    """Publish candles until the silent page is dropped; check the reading page and the bus went on."""
    good.recv(timeout=10)  # its snapshot
    deadline = time.monotonic() + 60
    i = got = 0
    while d.counters["dropped_slow"] == 0:
        assert time.monotonic() < deadline, f"the silent page was never dropped: {d.counters}"
        for _ in range(500):  # distinct candles: every frame carries hundreds of them
            t = T0 + dt.timedelta(minutes=i)
            pub.publish("ohlc.STOCK:US:X.1M", {"full_symbol": "STOCK:US:X", "interval": "1M", "datetime": t,
                                               "close_datetime": t, "open": 1.0, "high": 2.0, "low": 0.5,
                                               "close": 1.5, "volume": 1.0})
            i += 1
        while True:  # the reading page keeps up
            try:
                good.recv(timeout=0.01)
                got += 1
            except TimeoutError:
                break
    assert got > 0
    seen = d.state.counts["bars"]
    pub.publish("ohlc.STOCK:US:X.1M", {"full_symbol": "STOCK:US:X", "interval": "1M", "datetime": T0,
                                       "close_datetime": T0, "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5,
                                       "volume": 1.0, "closed": False})
    deadline = time.monotonic() + 30
    frames = 0
    while frames == 0 or d.state.counts["messages"] <= seen:  # the server still reads the bus and serves pages
        assert time.monotonic() < deadline, "the dashboard stopped after dropping a page"
        try:
            good.recv(timeout=0.5)
            frames += 1
        except TimeoutError:
            pass
    with mw.rpc_client(timeout=10) as c:
        assert c.call("middleware", "ping")["pong"] is True
    slow.settimeout(30)  # the server closed the silent page: reading it to the end finds EOF (or a reset)
    try:
        while slow.recv(1 << 16):
            pass
    except ConnectionResetError:
        pass  # aborted once its close handshake timed out: closed all the same


def test_a_page_that_vanishes_is_forgotten(mw: Middleware) -> None:
    ep = mw.endpoints()
    with DashboardServer(ep.rpc_frontend, ep.subscribe, context=mw.context, bus=mw.bus) as d:
        raw = socket.create_connection(("127.0.0.1", d.port))
        page = connect(ws_url(d), sock=raw, additional_headers={"Cookie": f"aitrados_dashboard={d.token}"},
                       legacy=True)  # closed under its feet below
        deadline = time.monotonic() + 10
        while len(d.pages) != 1:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        raw.shutdown(socket.SHUT_RDWR)  # gone without a close frame, as a killed browser
        raw.close()
        deadline = time.monotonic() + 30
        while d.pages:
            assert time.monotonic() < deadline, "a vanished page was kept"
            time.sleep(0.05)
        del page
