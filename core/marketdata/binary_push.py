"""Binary ``ohlc`` pushes between our own replay server and our own WebSocket client.

The AiTrados protocol sends every WebSocket message as JSON text; that stays the default. When
both ends are ours (the middleware replaying from its local replay server), the client may ask for
``ohlc`` pushes as msgpack instead, in its ``authenticate`` message::

    {"message_type": "authenticate", "params": {"secret_key": K, "push_encoding": "msgpack"}}

A server that knows the option answers ``result: {"authenticated": true, "push_encoding":
"msgpack"}`` and sends each ``ohlc`` push as one *binary* frame: the msgpack map
``{"message_type": "ohlc", "result": [Bar, ...]}``, each record being the bus's own msgpack
encoding of a :class:`~aitrados.marketdata.models.Bar` (its field names; timestamps as msgpack
timestamps). Everything else (replies, news, events, ``replay_end``, errors) stays JSON text. A
server that does not know the option (the cloud, an older replay server) ignores it and does not
echo it, and the client keeps reading JSON.

The point is speed: the client decodes a whole push to ``Bar`` objects in one C call, without
the JSON path's per-record Python loop (symbol parts joined, interval names normalised,
timestamps checked) — the names are checked once per distinct value instead.
"""

from __future__ import annotations

import datetime as dt
import math

import msgspec

from .intervals import normalize_interval
from .models import Bar, normalize_full_symbol

__all__ = ["PUSH_ENCODING", "encode_ohlc_push", "decode_ohlc_push"]

#: The ``push_encoding`` value a client sends in ``authenticate`` (and the server echoes) for binary pushes.
PUSH_ENCODING = "msgpack"
UTC = dt.timezone.utc


class _OhlcPush(msgspec.Struct):
    """A binary ``ohlc`` push: the envelope's ``message_type`` and the bars."""

    message_type: str
    result: list[Bar]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(_OhlcPush)
#: Names already checked (canonical full symbols, canonical intervals); cleared past _NAMES_MAX.
_good_symbols: set[str] = set()
_good_intervals: set[str] = set()
_NAMES_MAX = 100_000


def encode_ohlc_push(bars: list[Bar]) -> bytes:
    """The binary frame of one ``ohlc`` push of *bars* (timezone-aware UTC timestamps)."""
    return _encoder.encode({"message_type": "ohlc", "result": bars})


def _check_names(bars: list[Bar]) -> None:
    """Raise ``ValueError`` unless every bar's full symbol and interval are canonical (checked once per name)."""
    for fs in {b.full_symbol for b in bars}:
        if fs not in _good_symbols:
            if normalize_full_symbol(fs) != fs:  # raises ValueError for a malformed one
                raise ValueError(f"full_symbol {fs!r} is not canonical (expected {normalize_full_symbol(fs)!r})")
            if len(_good_symbols) >= _NAMES_MAX:
                _good_symbols.clear()
            _good_symbols.add(fs)
    for iv in {b.interval for b in bars}:
        if iv not in _good_intervals:
            if normalize_interval(iv) != iv:
                raise ValueError(f"interval {iv!r} is not canonical (expected {normalize_interval(iv)!r})")
            if len(_good_intervals) >= _NAMES_MAX:
                _good_intervals.clear()
            _good_intervals.add(iv)


def decode_ohlc_push(raw: bytes) -> list[Bar]:
    """The bars of a binary ``ohlc`` push, the same :class:`Bar` values its JSON push decodes to.

    :raises ValueError: for anything but an ``ohlc`` push of well-formed bars (a wrong type or a missing
        field, a malformed or non-canonical symbol or interval, a timestamp other than UTC, a non-finite price or
        volume); ``msgspec.DecodeError`` (a ``ValueError``) for bytes that are not such a msgpack map
    """
    push = _decoder.decode(raw)
    if push.message_type != "ohlc":
        raise ValueError(f"a binary push must be an ohlc push, not {push.message_type!r}")
    bars = push.result
    if not bars:
        return bars
    _check_names(bars)
    isfinite = math.isfinite
    for b in bars:
        # one sum per bar: NaN or an infinity in any field makes it non-finite
        if not isfinite(b.open + b.high + b.low + b.close + b.volume) or b.datetime.tzinfo is not UTC \
                or b.close_datetime.tzinfo is not UTC:
            raise ValueError(f"bar {b.full_symbol} {b.interval} at {b.datetime}: non-finite price or volume, "
                             "or a timestamp that is not UTC (send msgpack timestamps)")
    return bars
