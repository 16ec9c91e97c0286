"""Binary ``ohlc`` pushes (``push_encoding: msgpack``) between our replay server and our WebSocket client.

Oracle: the same replay pushed as JSON (the protocol's default) to another client of the same server.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

import msgspec
import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve

from aitrados.marketdata.binary_push import decode_ohlc_push, encode_ohlc_push
from aitrados.marketdata.errors import ProtocolError
from aitrados.marketdata.models import Bar
from aitrados.marketdata.replay_server import ReplayServer
from aitrados.marketdata.settings import MarketDataSettings
from aitrados.marketdata.ws_client import AitradosWSClient, ReplayEnd

pytestmark = pytest.mark.timeout(60)

KEY = "binary-push-key"
SYMS = ["STOCK:US:AAPL", "CRYPTO:GLOBAL:BTCUSD", "FOREX:GLOBAL:EURUSD"]
UTC = dt.timezone.utc
T0 = dt.datetime(2018, 3, 5, 14, 30, tzinfo=UTC)


def settings() -> MarketDataSettings:
    return MarketDataSettings(replay_symbols=SYMS, replay_days=0.125, replay_history_days=1, replay_bundled=False)


def bar(**over: Any) -> Bar:
    fields: dict[str, Any] = dict(full_symbol="STOCK:US:AAPL", interval="1M", datetime=T0,
                                  close_datetime=T0 + dt.timedelta(minutes=1), open=10.0, high=11.5, low=9.25,
                                  close=10.75, volume=1200.0, vwap=10.5, closed=True)
    fields.update(over)
    return Bar(**fields)


def test_binary_pushes_decode_to_exactly_the_bars_json_pushes_give() -> None:
    async def run() -> None:
        async with ReplayServer(settings(), speed=0, autostart="manual") as srv:
            got: dict[str, list[list[Bar]]] = {"json": [], "msgpack": []}
            ends: list[ReplayEnd] = []
            clients = {enc: AitradosWSClient(srv.ws_url, KEY, on_bars=got[enc].append, on_replay_end=ends.append,
                                             push_encoding=enc) for enc in got}
            for c in clients.values():
                await c.subscribe_ohlc("STOCK:US:AAPL", "CRYPTO:GLOBAL:*", "FOREX:GLOBAL:EURUSD")
                await c.start()
                await c.wait_subscribed("ohlc")
            assert clients["msgpack"].binary_pushes and not clients["json"].binary_pushes
            srv.start_clock()
            async with asyncio.timeout(30):
                while len(ends) < 2:
                    await asyncio.sleep(0.01)
            for c in clients.values():
                await c.close()
            flat = {enc: [b for call in calls for b in call] for enc, calls in got.items()}
            assert flat["msgpack"] == flat["json"] and len(flat["json"]) == len(srv.store.stream_bars()) > 100
            assert [len(c) for c in got["msgpack"]] == [len(c) for c in got["json"]]  # one time step a call, both
            assert all(type(b) is Bar and b.datetime.tzinfo is UTC and b.close_datetime.tzinfo is UTC
                       for b in flat["msgpack"])
            assert ends[0] == ends[1]

    asyncio.run(run())


def test_only_ohlc_pushes_are_binary_and_only_for_the_session_that_asked() -> None:
    """On the wire: the reply echoes ``push_encoding`` only when granted; ohlc pushes are binary frames
    for that session alone; replies and ``replay_end`` stay JSON text; any other value keeps JSON."""

    async def session(srv: ReplayServer, encoding: Any) -> Any:
        ws = await connect(srv.ws_url + "/ws")
        params: dict[str, Any] = {"secret_key": KEY}
        if encoding is not None:
            params["push_encoding"] = encoding
        await ws.send(json.dumps({"message_type": "authenticate", "params": params}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
        await ws.send(json.dumps({"message_type": "subscribe", "params": {"subscribe_type": "ohlc",
                                                                          "topics": ["STOCK:US:AAPL"]}}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["message_type"] == "show_subscribe"
        return ws, reply["result"]

    async def frames(ws: Any) -> list[str | bytes]:
        out: list[str | bytes] = []
        while True:
            f = await asyncio.wait_for(ws.recv(), 10)
            out.append(f)
            if isinstance(f, str) and json.loads(f)["message_type"] == "replay_end":
                return out

    async def run() -> None:
        async with ReplayServer(settings(), speed=0, autostart="manual") as srv:
            binary, granted = await session(srv, "msgpack")
            plain, not_asked = await session(srv, None)
            other, bogus = await session(srv, "protobuf")
            assert granted == {"authenticated": True, "push_encoding": "msgpack"}
            assert not_asked == bogus == {"authenticated": True}  # the protocol's reply, unchanged
            srv.start_clock()
            got = [await frames(ws) for ws in (binary, plain, other)]
            for ws in (binary, plain, other):
                await ws.close()
            b, p, o = got
            assert all(isinstance(f, bytes) for f in b[:-1]) and isinstance(b[-1], str)
            assert all(isinstance(f, str) for f in p + o)
            as_json = [rec for f in p[:-1] for rec in json.loads(f)["result"]]
            as_bin = [x for f in b[:-1] for x in decode_ohlc_push(f)]
            assert len(as_bin) == len(as_json) > 10
            assert [x.close for x in as_bin] == [r["close"] for r in as_json]
            assert [x.datetime.isoformat() for x in as_bin] == [r["datetime"] for r in as_json]

    asyncio.run(run())


@pytest.mark.parametrize("push,why", [
    ({"message_type": "news", "result": []}, "must be an ohlc push"),
    ({"message_type": "ohlc", "result": [{"full_symbol": "STOCK:US:AAPL"}]}, "missing required field"),
    ({"message_type": "ohlc", "result": [{**msgspec.structs.asdict(bar()), "high": float("nan")}]}, "non-finite"),
    ({"message_type": "ohlc", "result": [{**msgspec.structs.asdict(bar()), "volume": float("inf")}]}, "non-finite"),
    ({"message_type": "ohlc", "result": [{**msgspec.structs.asdict(bar()), "datetime": "2018-03-05T14:30:00"}]},
     "not UTC"),
    ({"message_type": "ohlc", "result": [{**msgspec.structs.asdict(bar()), "full_symbol": "stock:us:aapl"}]},
     "not canonical"),
    ({"message_type": "ohlc", "result": [{**msgspec.structs.asdict(bar()), "full_symbol": "AAPL"}]}, "bad full_symbol"),
    ({"message_type": "ohlc", "result": [{**msgspec.structs.asdict(bar()), "interval": "1m"}]}, "not canonical"),
    ({"message_type": "ohlc", "result": [{**msgspec.structs.asdict(bar()), "interval": "7M"}]}, "interval"),
])
def test_a_bad_binary_push_is_refused_with_the_reason(push: dict[str, Any], why: str) -> None:
    with pytest.raises(ValueError, match=why):
        decode_ohlc_push(msgspec.msgpack.encode(push))


def test_binary_round_trip_keeps_every_field() -> None:
    bars = [bar(), bar(full_symbol="CRYPTO:GLOBAL:BTCUSD", vwap=None, closed=False, volume=0.0)]
    assert decode_ohlc_push(encode_ohlc_push(bars)) == bars
    assert decode_ohlc_push(encode_ohlc_push([])) == []
    with pytest.raises(ValueError):
        decode_ohlc_push(b"\xc1 not msgpack")


def test_a_server_that_does_not_grant_it_keeps_json_and_a_stray_binary_frame_is_reported() -> None:
    """Against a server that ignores ``push_encoding`` (as the cloud would), the client reads JSON; a binary
    frame it did not ask for, or a bad one, is a reported protocol error and the stream goes on."""
    rec = {"asset_schema": "stock", "country_iso_code": "US", "symbol": "AAPL", "interval": "1M",
           "datetime": "2018-03-05T14:30:00+00:00", "close_datetime": "2018-03-05T14:31:00+00:00",
           "open": 10.0, "high": 11.5, "low": 9.25, "close": 10.75, "volume": 1200.0, "vwap": 10.5}
    later = {**rec, "datetime": "2018-03-05T14:31:00+00:00", "close_datetime": "2018-03-05T14:32:00+00:00"}
    seen_params: list[dict[str, Any]] = []

    async def handler(conn: Any) -> None:
        auth = json.loads(await conn.recv())
        seen_params.append(auth["params"])
        await conn.send(json.dumps({"message_type": "authenticate", "status": "ok", "code": 200,
                                    "result": {"authenticated": True}}))
        await conn.send(json.dumps({"message_type": "ohlc", "result": [rec]}))
        await conn.send(encode_ohlc_push([bar(datetime=T0 + dt.timedelta(minutes=5),
                                              close_datetime=T0 + dt.timedelta(minutes=6))]))
        await conn.send(json.dumps({"message_type": "ohlc", "result": [later]}))
        await conn.send(json.dumps({"message_type": "replay_end", "result": {"clock": "2018-03-05T15:00:00Z"}}))
        await conn.wait_closed()

    async def run() -> None:
        async with serve(handler, "127.0.0.1", 0) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            bars: list[Bar] = []
            errors: list[BaseException] = []
            ends: list[ReplayEnd] = []
            c = AitradosWSClient(f"ws://127.0.0.1:{port}", KEY, on_bars=bars.extend, on_error=errors.append,
                                 on_replay_end=ends.append, push_encoding="msgpack")
            await c.start()
            async with asyncio.timeout(20):
                while not ends:
                    await asyncio.sleep(0.01)
            assert not c.binary_pushes
            await c.close()
            assert seen_params == [{"secret_key": KEY, "push_encoding": "msgpack"}]
            assert [b.datetime for b in bars] == [T0, T0 + dt.timedelta(minutes=1)]  # the JSON ones, in order
            assert len(errors) == 1 and isinstance(errors[0], ProtocolError)
            assert "did not ask for binary pushes" in str(errors[0])

    asyncio.run(run())


def test_the_default_authenticate_carries_the_key_alone_and_bad_encodings_are_refused() -> None:
    seen: list[dict[str, Any]] = []

    async def handler(conn: Any) -> None:
        seen.append(json.loads(await conn.recv())["params"])
        await conn.send(json.dumps({"message_type": "authenticate", "result": {"authenticated": True,
                                                                               "push_encoding": "msgpack"}}))
        await conn.wait_closed()

    async def run() -> None:
        async with serve(handler, "127.0.0.1", 0) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            c = AitradosWSClient(f"ws://127.0.0.1:{port}", KEY, on_bars=print)
            await c.start()
            assert not c.binary_pushes  # a server echoing what was never asked for changes nothing
            await c.close()
        assert seen == [{"secret_key": KEY}]

    asyncio.run(run())
    with pytest.raises(ValueError, match="push_encoding must be json or msgpack"):
        AitradosWSClient("ws://127.0.0.1:1", KEY, push_encoding="protobuf")
