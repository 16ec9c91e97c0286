"""Exceptions raised by bus clients: one typed class per error reply type."""

from __future__ import annotations

from ..errors import AitradosError


class BusError(AitradosError):
    """Base of every bus error (an :class:`~aitrados.errors.AitradosError`)."""


class RPCTimeoutError(BusError, TimeoutError):
    """No reply arrived within the call's timeout (the client stays usable)."""


class RemoteError(BusError):
    """A service (or the router) answered with an error reply.

    :ivar type: the error type named in the reply (e.g. ``ValueError``, ``UnknownService``)
    :ivar remote_traceback: the service's traceback text, when it sent one
    """

    def __init__(self, type_: str, message: str, traceback: str | None = None) -> None:
        super().__init__(f"{type_}: {message}")
        self.type = type_
        self.message = message
        self.remote_traceback = traceback


class UnknownServiceError(RemoteError):
    """No worker has registered the requested service name."""


class ServiceUnavailableError(RemoteError):
    """The worker serving the request died or left before answering."""


class MethodNotFoundError(RemoteError):
    """The service has no public method of that name."""


class BadRequestError(RemoteError):
    """The request could not be decoded or its parameters did not fit."""


class UnauthorizedError(RemoteError):
    """The call needs a token the caller did not send (operator or service role), or a READY was refused."""


class BusyError(RemoteError):
    """Every worker of the service has a full queue; the request was not delivered and may be retried."""


class TooManyRequestsError(RemoteError):
    """This client already has ``bus.max_inflight_per_client`` requests in flight at the router."""


_BY_TYPE: dict[str, type[RemoteError]] = {
    "UnknownService": UnknownServiceError,
    "ServiceUnavailable": ServiceUnavailableError,
    "MethodNotFound": MethodNotFoundError,
    "BadRequest": BadRequestError,
    "Unauthorized": UnauthorizedError,
    "Busy": BusyError,
    "TooManyRequests": TooManyRequestsError,
}


def remote_error(type_: str, message: str, traceback: str | None = None) -> RemoteError:
    """Build the typed exception for an error reply of *type_*."""
    return _BY_TYPE.get(type_, RemoteError)(type_, message, traceback)
