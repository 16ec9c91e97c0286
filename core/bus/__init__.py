"""The bus: RPC and pub/sub routers, their wire protocol, clients and services."""

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

__all__ = [
    "AsyncRPCClient", "AsyncSubscriber", "BadRequestError", "BusError", "BusyError", "Caller", "Message",
    "MethodNotFoundError", "Publisher", "RPCClient", "RPCTimeoutError", "RemoteError", "Service",
    "ServiceUnavailableError", "ServiceWorker", "Subscriber", "SubscriberStats", "TooManyRequestsError",
    "UnauthorizedError", "UnknownServiceError", "current_caller", "rpc_method",
]
