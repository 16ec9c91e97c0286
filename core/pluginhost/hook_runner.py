"""Calling hook implementations one by one: sync or async, errors logged and counted per plugin.

``HookRunner`` is what the host calls notifications (``on_*``) and decisions (``check_order``)
through; ``run_sync`` awaits a value where no event loop runs (the ``register_*`` hooks at load
time).
"""

from __future__ import annotations

import asyncio
import inspect
from collections import Counter
from typing import Any

import pluggy
from loguru import logger

from .order_check import OrderCheck, decision_of


def run_sync(value: Any) -> Any:
    """Await *value* when it is awaitable (used where no event loop runs); returns its result."""
    if inspect.isawaitable(value):
        async def wait() -> Any:
            return await value
        return asyncio.run(wait())
    return value


def in_loop(loop: asyncio.AbstractEventLoop) -> bool:
    """True when the caller runs inside *loop* (a blocking wait there would wait for itself)."""
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


_LOG_AT = frozenset((2, 3, 10, 100, 1000))


class HookRunner:
    """Calls hook implementations one by one: sync or async, errors logged and counted per plugin.

    :param pm: the plugin manager holding the implementations
    :param loop: an event loop running in another thread; sync callers hand coroutines to it
    """

    def __init__(self, pm: pluggy.PluginManager, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.pm = pm
        self.loop = loop
        self.errors: Counter[tuple[str, str]] = Counter()
        self.calls: Counter[str] = Counter()
        self._cache: dict[str, tuple[int, list[Any]]] = {}

    def impls(self, hook: str) -> list[Any]:
        """Implementations of *hook* in pluggy's call order (last registered first, tryfirst honoured)."""
        caller = getattr(self.pm.hook, hook, None)
        if caller is None:
            return []
        raw = caller.get_hookimpls()
        hit = self._cache.get(hook)
        if hit is not None and hit[0] == len(raw):  # registrations only happen at load time
            return hit[1]
        out = list(reversed(raw))
        self._cache[hook] = (len(raw), out)
        return out

    def implemented(self, hook: str) -> bool:
        """True if any loaded plugin implements *hook*."""
        return bool(self.impls(hook))

    @staticmethod
    def _kwargs(impl: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        return {a: kwargs[a] for a in impl.argnames if a in kwargs}

    def _failed(self, plugin: str, hook: str, exc: BaseException) -> None:
        """Count the error; log the first with its traceback, then the 10th, 100th, ... (no log floods)."""
        n = self.errors[(plugin, hook)] = self.errors[(plugin, hook)] + 1
        if n == 1:
            logger.opt(exception=exc).error("plugin {!r} hook {} raised {}: {}", plugin, hook, type(exc).__name__, exc)
        elif n in _LOG_AT or n % 10_000 == 0:
            logger.error("plugin {!r} hook {} raised {}: {} (error #{} of this hook; counted, logged at "
                         "10, 100, 1000... )", plugin, hook, type(exc).__name__, exc, n)

    async def anotify(self, hook: str, **kwargs: Any) -> int:
        """Call every implementation of notification *hook*, awaiting async ones; returns the number that raised."""
        failed = 0
        self.calls[hook] += 1
        for impl in self.impls(hook):
            try:
                r = impl.function(**self._kwargs(impl, kwargs))
                if inspect.isawaitable(r):
                    await r
            except Exception as exc:
                failed += 1
                self._failed(impl.plugin_name, hook, exc)
        return failed

    def notify(self, hook: str, **kwargs: Any) -> int:
        """Sync twin of ``anotify``: usable from any thread (not from inside the host's loop)."""
        loop = self.loop
        if loop is not None and loop.is_running():
            if in_loop(loop):
                raise RuntimeError(f"notify({hook!r}) called inside the host's event loop; use `await anotify(...)`")
            return asyncio.run_coroutine_threadsafe(self.anotify(hook, **kwargs), loop).result()
        failed = 0
        self.calls[hook] += 1
        for impl in self.impls(hook):
            try:
                run_sync(impl.function(**self._kwargs(impl, kwargs)))
            except Exception as exc:
                failed += 1
                self._failed(impl.plugin_name, hook, exc)
        return failed

    async def acheck(self, hook: str, **kwargs: Any) -> OrderCheck | None:
        """Call firstresult *hook* until one returns non-None; a raising implementation rejects (fail closed)."""
        self.calls[hook] += 1
        for impl in self.impls(hook):
            try:
                r = impl.function(**self._kwargs(impl, kwargs))
                if inspect.isawaitable(r):
                    r = await r
            except Exception as exc:
                self._failed(impl.plugin_name, hook, exc)
                return OrderCheck(False, f"plugin {impl.plugin_name!r} {hook} raised {type(exc).__name__}: {exc}",
                                  impl.plugin_name)
            d = decision_of(impl.plugin_name, r)
            if d is not None:
                return d
        return None

    def check(self, hook: str, **kwargs: Any) -> OrderCheck | None:
        """Sync twin of ``acheck``."""
        loop = self.loop
        if loop is not None and loop.is_running() and not in_loop(loop):
            return asyncio.run_coroutine_threadsafe(self.acheck(hook, **kwargs), loop).result()
        if loop is not None and in_loop(loop):
            raise RuntimeError(f"check({hook!r}) called inside the host's event loop; use `await acheck(...)`")
        return asyncio.run(self.acheck(hook, **kwargs))

    def error_counts(self) -> dict[str, dict[str, int]]:
        """Errors per plugin and hook."""
        out: dict[str, dict[str, int]] = {}
        for (plugin, hook), n in self.errors.items():
            out.setdefault(plugin, {})[hook] = n
        return out


__all__ = ["HookRunner", "in_loop", "run_sync"]
