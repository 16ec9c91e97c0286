"""The bus: RPC and pub/sub routers, their wire protocol, clients and services."""

from .client import AsyncRPCClient, RPCClient
from .errors import (
    BadRequestError,
    BusError,
    MethodNotFoundError,
    RemoteError,
    RPCTimeoutError,
    ServiceUnavailableError,
    UnknownServiceError,
)
from .pubsub import AsyncSubscriber, Message, Publisher, Subscriber, SubscriberStats
from .service import Service, ServiceWorker, rpc_method

__all__ = [
    "AsyncRPCClient", "AsyncSubscriber", "BadRequestError", "BusError", "Message", "MethodNotFoundError",
    "Publisher", "RPCClient", "RPCTimeoutError", "RemoteError", "Service", "ServiceUnavailableError",
    "ServiceWorker", "Subscriber", "SubscriberStats", "UnknownServiceError", "rpc_method",
]
