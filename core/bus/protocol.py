"""The aitrados bus wire protocol: frame layouts, command bytes and the body encoding.

Everything a peer in another language needs is written down in docs/protocol.md; this
module is the executable form of that page. The protocol is versioned separately from the
package: ``PROTOCOL_VERSION`` changes only when the frames change.

Bodies are MessagePack (through msgspec); pickle is never used. Datetimes travel as the
standard MessagePack timestamp extension (type -1); msgspec Structs travel as maps.
"""

from __future__ import annotations

import struct
import unicodedata
from typing import Any, Final

import msgspec

#: Version of the wire protocol (docs/protocol.md states the same number; a test checks it).
PROTOCOL_VERSION: Final = 1

# --- RPC ---------------------------------------------------------------------------------
#: First frame of every client <-> router message.
CLIENT_TAG: Final = b"ATC1"
#: First frame of every worker <-> router message.
WORKER_TAG: Final = b"ATW1"

# Command bytes (second frame).
REQUEST: Final = b"\x01"
REPLY: Final = b"\x02"
ERROR: Final = b"\x03"
READY: Final = b"\x04"
HEARTBEAT: Final = b"\x05"
DISCONNECT: Final = b"\x06"

COMMAND_NAMES: Final = {
    REQUEST: "REQUEST",
    REPLY: "REPLY",
    ERROR: "ERROR",
    READY: "READY",
    HEARTBEAT: "HEARTBEAT",
    DISCONNECT: "DISCONNECT",
}

#: Longest service name (UTF-8 bytes) and request id the router accepts.
MAX_SERVICE_NAME: Final = 255
MAX_REQUEST_ID: Final = 255

#: Name of the service the RPC router answers itself.
MIDDLEWARE_SERVICE: Final = "middleware"


def service_name_problem(name: bytes) -> str | None:
    """Why *name* cannot be registered as a service (None when it can).

    A service name is 1..255 bytes of UTF-8, not ``middleware``, with no control, format
    (bidirectional overrides, zero-width characters), unassigned or private-use characters and
    no white space, so that it shows in logs and ``aitrados status`` as exactly what it is.
    """
    if not 0 < len(name) <= MAX_SERVICE_NAME:
        return "service name must be 1 to 255 bytes"
    try:
        text = name.decode("utf-8")
    except UnicodeDecodeError:
        return "service name is not UTF-8"
    if text == MIDDLEWARE_SERVICE:
        return "service name 'middleware' is reserved"
    for ch in text:
        cat = unicodedata.category(ch)
        if cat[0] in ("C", "Z"):
            return f"service name has a control, format or space character (U+{ord(ch):04X})"
    return None


# --- pub/sub -----------------------------------------------------------------------------
#: Message meta frame: version (u8), publisher id (8 bytes), per-topic sequence (u64), big-endian.
META: Final = struct.Struct(">B8sQ")
META_VERSION: Final = 1
MAX_TOPIC: Final = 255

# --- bodies ------------------------------------------------------------------------------
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()

#: Encode any msgpack-able object (dict, list, str, number, bool, None, bytes, datetime,
#: msgspec.Struct) to bytes.
encode = _encoder.encode
#: Decode msgpack bytes to plain Python objects.
decode = _decoder.decode

DecodeError = msgspec.DecodeError
EncodeError = (msgspec.EncodeError, TypeError, OverflowError)


def error_body(type_: str, message: str, traceback: str | None = None) -> bytes:
    """Encode the body of an ERROR reply: a map with ``type``, ``message`` and, optionally, ``traceback``."""
    body: dict[str, Any] = {"type": type_, "message": message}
    if traceback:
        body["traceback"] = traceback
    return encode(body)


def request_body(method: str, params: dict[str, Any], auth: str | None = None) -> bytes:
    """Encode the body of a REQUEST: a map with ``method``, ``params`` (keyword arguments) and,
    when the caller proves a role, ``auth`` (its token)."""
    if auth is None:
        return encode({"method": method, "params": params})
    return encode({"method": method, "params": params, "auth": auth})


def valid_topic(topic: bytes) -> bool:
    """True if *topic* is a usable topic frame: 1..255 bytes of UTF-8 without spaces."""
    if not 0 < len(topic) <= MAX_TOPIC:
        return False
    try:
        text = topic.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return " " not in text
