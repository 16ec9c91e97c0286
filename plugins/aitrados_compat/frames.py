"""The official trade-middleware frames and JSON bodies (aitrados-api 0.2.0), written down here.

RPC, client (REQ) -> router frontend (ROUTER): ``[client_id, b"", backend_identity, function_name,
params_json, secret_key]`` where ``params_json`` is ``{"args": [...], "kwargs": {...}}``.
Router -> client: ``[client_id, b"", backend_identity, function_name, response_json]``.
Backend (DEALER, identity = backend_identity) -> router: ``[b"", b"REGISTER", name]``,
``[b"", b"HEARTBEAT", name]`` and replies ``[b"", client_id, backend_identity, function_name, response]``.
Router -> backend: ``[b"", client_id, backend_identity, function_name, params_json]``.
Pub/sub: ``[topic, json]`` where the topic is the subscriber's callback name (``on_ohlc`` ...).
Responses are ``UnifiedResponse`` (``status ok, code 200, message success, reference, result``)
or ``ErrorResponse`` (``status error, code, message, reference, detail``) as JSON.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import msgspec

REGISTER = b"REGISTER"
HEARTBEAT = b"HEARTBEAT"
#: The function every official router answers itself.
ONLINE_SERVICES = b"get_all_online_backend_services"
#: The official backend identity whose functions the gateway answers from our instances.
AITRADOS_API = "aitrados_api"
#: Topics official clients send as keep-alive noise; forwarded to official subscribers only.
NOISE_TOPICS = frozenset({b"null", b"fake_topic"})


def _default(obj: Any) -> Any:
    if isinstance(obj, (dt.datetime, dt.date)):
        return obj.isoformat()
    if isinstance(obj, msgspec.Struct):
        return msgspec.to_builtins(obj)
    return str(obj)


def dumps(obj: Any) -> bytes:
    """JSON bytes of *obj* (datetimes as ISO text, msgspec Structs as maps, the rest by ``str``)."""
    return json.dumps(obj, default=_default).encode()


def ok(result: Any, reference: Any = None) -> bytes:
    """An official ``UnifiedResponse`` body."""
    return dumps({"status": "ok", "code": 200, "message": "success", "reference": reference, "result": result})


def error(message: str, code: int = 400, status: str = "error", detail: Any = None) -> bytes:
    """An official ``ErrorResponse`` body."""
    return dumps({"status": status, "code": code, "message": message, "reference": None, "detail": detail})


def parse_params(raw: bytes) -> tuple[list[Any], dict[str, Any]]:
    """``(args, kwargs)`` of an official params frame; ``ValueError`` when it is not that JSON."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"params frame is not JSON (or nested too deep): {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("params frame must be a JSON object with args and kwargs")
    args, kwargs = data.get("args", []), data.get("kwargs", {})
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise ValueError("params: args must be a list and kwargs an object")
    return args, kwargs
