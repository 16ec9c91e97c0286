"""Official ``BackendService`` peers seen from the native bus: one registry for both kinds of caller.

When an official backend registers with the gateway, a native service of the same name is served
whose every method forwards to it, so ``aitrados call my_signals score x=3`` reaches it just as
``rpc_request("my_signals", "score", x=3)`` does. Native ``params`` become the official kwargs; a
``args`` list among them becomes the official positional arguments.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aitrados.bus.service import Service

#: ``await forward(backend, function, args, kwargs)`` -> the backend's decoded answer.
Forward = Callable[[str, str, list[Any], dict[str, Any]], Awaitable[Any]]


class _AnyMethod(dict):  # type: ignore[type-arg]
    """The method table of a proxy: every name is a method (the official backend decides)."""

    def __init__(self, make: Callable[[str], Callable[..., Awaitable[Any]]]) -> None:
        super().__init__()
        self._make = make

    def get(self, key: Any, default: Any = None) -> Any:
        if not isinstance(key, str) or not key:
            return default
        return self._make(key), "async"


class OfficialBackendProxy(Service):
    """A native service standing for one official backend; calls hop to the gateway's loop.

    :param name: the official backend identity (the native service name)
    :param forward: the gateway's coroutine that sends one call to the backend and awaits its answer
    :param loop: the gateway's event loop
    :param timeout: seconds one call may take
    """

    def __init__(self, name: str, forward: Forward, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self.name = name  # type: ignore[misc]  # per instance: one proxy per official backend
        self._forward = forward
        self._loop = loop
        self._timeout = timeout

    def rpc_methods(self) -> dict[str, tuple[Callable[..., Any], str]]:
        """Every method name is accepted and forwarded."""
        def make(method: str) -> Callable[..., Awaitable[Any]]:
            async def call(**params: Any) -> Any:
                args = params.pop("args", [])
                if not isinstance(args, list):
                    raise TypeError("args must be a list (the official positional arguments)")
                fut = asyncio.run_coroutine_threadsafe(self._forward(self.name, method, args, params), self._loop)
                return await asyncio.wait_for(asyncio.wrap_future(fut), self._timeout)
            return call
        return _AnyMethod(make)
