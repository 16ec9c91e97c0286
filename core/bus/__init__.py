"""The bus: RPC and pub/sub routers, their wire protocol, clients and services.

The names below load their module on first use (``from aitrados.bus import Service`` imports
``aitrados.bus.service`` then), so ``import aitrados.bus.settings`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:
    from .client import AsyncRPCClient, RPCClient
    from .errors import (
        BadRequestError,
        BusError,
        BusyError,
        MethodNotFoundError,
        RemoteError,
        RPCTimeoutError,
        ServiceUnavailableError,
        TooManyRequestsError,
        UnauthorizedError,
        UnknownServiceError,
    )
    from .pubsub import AsyncSubscriber, Message, Publisher, Subscriber, SubscriberStats
    from .service import Caller, Service, ServiceWorker, current_caller, rpc_method

_EXPORTS = {
    **dict.fromkeys(["AsyncRPCClient", "RPCClient"], "client"),
    **dict.fromkeys(["BadRequestError", "BusError", "BusyError", "MethodNotFoundError", "RemoteError",
                     "RPCTimeoutError", "ServiceUnavailableError", "TooManyRequestsError", "UnauthorizedError",
                     "UnknownServiceError"], "errors"),
    **dict.fromkeys(["AsyncSubscriber", "Message", "Publisher", "Subscriber", "SubscriberStats"], "pubsub"),
    **dict.fromkeys(["Caller", "Service", "ServiceWorker", "current_caller", "rpc_method"], "service"),
}
__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)

__all__ = [
    "AsyncRPCClient", "AsyncSubscriber", "BadRequestError", "BusError", "BusyError", "Caller", "Message",
    "MethodNotFoundError", "Publisher", "RPCClient", "RPCTimeoutError", "RemoteError", "Service",
    "ServiceUnavailableError", "ServiceWorker", "Subscriber", "SubscriberStats", "TooManyRequestsError",
    "UnauthorizedError", "UnknownServiceError", "current_caller", "rpc_method",
]
