"""The plugin host: loaded plugins connected to the bus.

``PluginHost`` is what ``aitrados run`` (and an isolated worker) uses::

    host = PluginHost(settings, names=["sma_cross"], strict=False, isolate=["heavy"])
    host.start(middleware)   # or an ``Endpoints`` when the middleware runs elsewhere
    ...
    host.stop()

It loads the selected plugins, serves their services, calls ``on_startup``, subscribes to the
event topics and calls the matching hooks on one event loop, and spawns and supervises a
worker process for each isolated plugin.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterable
from typing import Any

import msgspec
import zmq
from loguru import logger

from ..bus.addresses import Endpoints
from ..bus.client import AsyncRPCClient, RPCClient
from ..bus.probe import aprove
from ..bus.pubsub import AsyncSubscriber, Publisher
from ..bus.service import Service, ServiceWorker
from ..events import CALLBACKS, Kind, Topic, decode, kind_of, parse_topic, topic_prefix
from .errors import PluginError, PluginLoadError
from .hook_runner import HookRunner
from .isolation import Supervisor
from .loop_thread import LoopThread
from .order_check import OrderCheck
from .registry import PluginInfo, PluginRegistry
from .settings import PluginHostSettings, host_settings_of

#: Topic prefix -> the hook its messages go to (from the event vocabulary, :mod:`aitrados.events`).
EVENT_HOOKS: dict[str, str] = {topic_prefix(kind): hook for kind, hook in CALLBACKS.items()}
#: Kinds whose hooks get the typed record (the others get the published map, as documented).
_TYPED = (Kind.BAR, Kind.NEWS, Kind.CALENDAR, Kind.SIGNAL)
#: The argument name of the one-argument event hooks (hookspecs.py).
_HOOK_ARG: dict[Kind, str] = {Kind.BAR: "bar", Kind.NEWS: "item", Kind.CALENDAR: "event", Kind.ORDER: "order",
                              Kind.FILL: "fill", Kind.POSITION: "position", Kind.SIGNAL: "signal"}


def struct_name(value: Any) -> str | None:
    """``module:QualName`` of an aitrados msgspec record (None for anything else)."""
    cls = type(value)
    if isinstance(value, msgspec.Struct) and cls.__module__.startswith("aitrados."):
        return f"{cls.__module__}:{cls.__qualname__}"
    return None


def revive(value: Any, type_name: str | None) -> Any:
    """Turn a map back into the aitrados record *type_name* names; the map when that fails."""
    if not type_name or not isinstance(value, dict):
        return value
    module, _, qual = type_name.partition(":")
    if not module.startswith("aitrados.") or not qual.isidentifier():
        return value
    try:
        import importlib

        cls = getattr(importlib.import_module(module), qual)
        if isinstance(cls, type) and issubclass(cls, msgspec.Struct):
            return msgspec.convert(value, cls)
    except (ImportError, AttributeError, msgspec.ValidationError, TypeError) as exc:
        logger.debug("cannot rebuild {} from the bus: {}", type_name, exc)
    return value


def event_call(topic: str, data: Any) -> tuple[str, dict[str, Any]] | None:
    """The hook and keyword arguments for a message on *topic*, or None if no hook takes it.

    Bars, news items and calendar events are decoded (:func:`aitrados.events.decode`) into
    their records; other payloads, and those that do not decode, are passed on as published.
    """
    kind = kind_of(topic)
    if kind not in CALLBACKS:
        return None
    try:
        t = parse_topic(topic) or Topic(kind)
    except ValueError:  # not the documented shape: still the kind's hook, parts as they come
        t = Topic(kind, topic.partition(".")[2])
    hook = CALLBACKS[t.kind]
    value = data
    if t.kind in _TYPED:
        try:
            value = decode(t.kind, data)
        except ValueError:
            pass
    if t.kind is Kind.CHART:
        return hook, {"full_symbol": t.subject, "interval": t.detail, "window": value}
    if t.kind is Kind.MTF:
        return hook, {"group": t.subject, "snapshot": data}
    return hook, {_HOOK_ARG[t.kind]: value}


class HostContext:
    """What a plugin's ``on_startup(host)`` gets: settings, bus clients, services, models.

    The same object exists in an isolated worker (``in_worker`` is True there), so a plugin
    runs unchanged in either place.
    """

    def __init__(self, host: PluginHost, endpoints: Endpoints, context: zmq.Context) -> None:
        self._host = host
        self.settings = host.settings
        self.endpoints = endpoints
        self.in_worker = host.in_worker
        self._context = context
        self._bus = getattr(host.settings, "bus", None)
        self._pub: Publisher | None = None
        self._pub_lock = threading.Lock()
        self._rpc: RPCClient | None = None
        self._arpc: AsyncRPCClient | None = None

    # ------------------------------------------------------------ settings and contributions
    def plugin_settings(self, name: str) -> Any:
        """The validated settings object of plugin *name* (None when it declares no model)."""
        reg = self._host.registry
        if name not in reg.plugin_settings:
            raise PluginError(f"plugin {name!r} is not loaded here; loaded: {', '.join(reg.loaded()) or 'none'}")
        return reg.plugin_settings[name]

    @property
    def services(self) -> dict[str, Service]:
        """Services contributed by the loaded plugins, by service name."""
        return self._host.registry.values("register_services")

    @property
    def providers(self) -> dict[str, Any]:
        """Market-data providers contributed by the loaded plugins, by name."""
        return self._host.registry.values("register_providers")

    @property
    def risk_rules(self) -> dict[str, Any]:
        """Risk rules contributed by the loaded plugins, by name."""
        return self._host.registry.values("register_risk_rules")

    @property
    def llm_models(self) -> dict[str, Any]:
        """LLM clients contributed by the loaded plugins, by name."""
        return self._host.registry.values("register_llm_models")

    def llm(self, name: str | None = None) -> Any:
        """The LLM client called *name* (the only one when *name* is None)."""
        models = self.llm_models
        if name is None and len(models) == 1:
            return next(iter(models.values()))
        if name in models:
            return models[name]
        raise PluginError(f"no LLM model {name!r}; registered: {', '.join(sorted(models)) or 'none'} "
                          "(install or select a plugin that implements register_llm_models)")

    def watch(self, part: Any) -> None:
        """Stop the run when *part* (anything with a ``failure`` attribute: a plugin's own threads)
        fails: the middleware's ``failure`` becomes *part*'s, so ``aitrados run`` exits non-zero with
        that cause. Where no middleware runs in this process (an isolated worker), it is not watched.
        """
        mw = getattr(self._host, "middleware", None)
        if mw is not None:
            mw.watch(part)
        else:
            logger.warning("{} is not watched: no middleware in this process", type(part).__name__)

    # ------------------------------------------------------------ bus
    @property
    def rpc(self) -> RPCClient:
        """A sync RPC client (thread-safe; in async hooks prefer ``arpc``)."""
        if self._rpc is None:
            self._rpc = RPCClient(self.endpoints.rpc_frontend, bus=self._bus, context=self._context)
        return self._rpc

    @property
    def arpc(self) -> AsyncRPCClient:
        """An asyncio RPC client for async hooks (bound to the host's event loop)."""
        if self._arpc is None:
            self._arpc = AsyncRPCClient(self.endpoints.rpc_frontend, bus=self._bus, context=self._context)
        return self._arpc

    def publish(self, topic: str, obj: Any) -> int:
        """Publish *obj* on *topic* through the bus (thread-safe); returns its sequence number."""
        with self._pub_lock:
            if self._pub is None:
                self._pub = Publisher(self.endpoints.publish, bus=self._bus, context=self._context)
            return self._pub.publish(topic, obj)

    # ------------------------------------------------------------ risk
    async def acheck_order(self, order: Any, context: Any = None) -> OrderCheck:
        """Ask the ``check_order`` hooks (in-process, then isolated workers) about *order*.

        Returns the first decision; accepted when nobody objects. Fail closed: a hook that
        raises, a worker that is down, late or errs rejects the order.
        """
        d = await self._host.runner.acheck("check_order", order=order, context=context)
        if d is not None:
            return d
        sup = self._host.supervisor
        if sup is not None:
            for w in sup.workers_with_hook("check_order"):
                if w.status != "running":
                    return OrderCheck(False, f"isolated plugin(s) {', '.join(w.plugins)} not running "
                                             f"({w.status}): rejected (fail closed)", w.plugins[0])
                try:
                    r = await self.arpc.call(w.service, "check_order", order=order, context=context,
                                             order_type=struct_name(order), context_type=struct_name(context),
                                             timeout=self._host.host_settings.check_timeout)
                except Exception as exc:
                    return OrderCheck(False, f"isolated plugin(s) {', '.join(w.plugins)} check_order failed: "
                                             f"{type(exc).__name__}: {exc}", w.plugins[0])
                if r is not None:
                    return OrderCheck(bool(r["accepted"]), str(r.get("reason", "")), r.get("plugin"))
        return OrderCheck(True, "", None)

    def check_order(self, order: Any, context: Any = None, timeout: float | None = 30.0) -> OrderCheck:
        """Sync twin of ``acheck_order``, callable from any thread but the host's loop."""
        return self._host.loop_thread_run(self.acheck_order(order, context), timeout)

    def close_arpc(self) -> None:
        """Close the asyncio RPC client if ``arpc`` opened one (call it on the host's loop, which it is bound to)."""
        if self._arpc is not None:
            self._arpc.close()
            self._arpc = None

    def close(self) -> None:
        """Close the sync bus clients this context opened (``close_arpc`` closes the asyncio one)."""
        for s in (self._pub, self._rpc):
            if s is not None:
                s.close()
        self._pub = self._rpc = None


class _WorkerControl(Service):
    """RPC face of an isolated worker: ping, status, check_order for the parent's risk checks and
    signals for its signal stage."""

    name = "worker"

    def __init__(self, host: PluginHost, name: str) -> None:
        self.name = name  # type: ignore[misc]
        self._host = host

    def ping(self) -> dict[str, Any]:
        """pid and plugins of this worker."""
        return {"pong": True, "pid": os.getpid(), "plugins": self._host.registry.loaded()}

    def status(self) -> dict[str, Any]:
        """Plugins, hooks and error counts of this worker."""
        return self._host.status()

    async def signals(self, kind: str | None, payload: Any) -> Any:
        """Feed one market event to this worker's signal modules for the parent's signal stage
        (``aitrados.signals.stage.worker_signals``): their signals; with *kind* None their plugin names."""
        from ..signals.stage import worker_signals

        return await worker_signals(self._host, kind, payload)

    async def check_order(self, order: Any, context: Any = None, order_type: str | None = None,
                          context_type: str | None = None) -> dict[str, Any] | None:
        """Run this worker's check_order hooks on the host loop; None when none decides.

        *order_type* / *context_type* name the aitrados record types the caller passed, so the
        hooks get the same types as in-process ones (the bus carries them as maps).
        """
        order, context = revive(order, order_type), revive(context, context_type)
        fut = asyncio.run_coroutine_threadsafe(
            self._host.runner.acheck("check_order", order=order, context=context), self._host.loop.loop)
        d = await asyncio.wrap_future(fut)
        return d.to_dict() if d is not None else None


class PluginHost:
    """Loads plugins and runs them against a middleware's bus.

    :param settings: the effective ``Settings``
    :param names: plugins to load (``--plugins``); None = ``plugin_host.default`` (unset: all installed)
    :param strict: any plugin failure raises (``--strict``); None = ``plugin_host.strict``
    :param isolate: plugins to run in their own worker process (``--isolate``), added to
        ``plugin_host.isolate``
    :param in_worker: this host *is* an isolated worker (nothing is isolated further)
    :param worker_name: the worker's name (its control service is ``worker.<name>``)
    :param host_settings: a ``PluginHostSettings`` overriding ``settings.plugin_host``
    """

    def __init__(self, settings: Any, names: Iterable[str] | None = None, strict: bool | None = None,
                 isolate: Iterable[str] = (), *, in_worker: bool = False, worker_name: str | None = None,
                 host_settings: PluginHostSettings | None = None) -> None:
        self.settings = settings
        self.host_settings = host_settings or host_settings_of(settings)
        self.in_worker = in_worker
        self.worker_name = worker_name
        if in_worker:  # a worker loads what its supervisor gave it, nothing more
            self.host_settings = self.host_settings.model_copy(update={"always": []})
        self.registry = PluginRegistry(settings, strict=strict, host_settings=self.host_settings)
        self.strict = self.registry.strict
        self.selected = self.registry.select(list(names) if names is not None else None)
        self.isolated: list[str] = [] if in_worker else [
            n for n in dict.fromkeys([*self.host_settings.isolate, *isolate]) if n in self.selected]
        unknown_iso = [n for n in isolate if n not in self.registry.installed]
        if unknown_iso:
            raise PluginError(f"--isolate {', '.join(unknown_iso)}: not installed; installed: "
                              f"{', '.join(sorted(self.registry.installed)) or 'none'}")
        not_selected = [n for n in isolate if n not in self.selected]
        if not_selected:
            self.selected += not_selected
            self.isolated += not_selected
        self.runner = HookRunner(self.registry.pm)
        self.loop: LoopThread | None = None
        self.context_obj: HostContext | None = None
        self.supervisor: Any = None
        #: The ``Middleware`` this host was started on in-process (None when given only its endpoints).
        self.middleware: Any = None
        self._service_workers: list[ServiceWorker] = []
        self._pump_task: asyncio.Future[Any] | None = None
        self._pump_ready = threading.Event()
        self._pump_error: BaseException | None = None
        self.events: dict[str, int] = {}
        self._loaded = False
        self.started = False

    # ---------------------------------------------------------------- load
    def load(self) -> list[PluginInfo]:
        """Load the in-process plugins (idempotent); isolated ones are only marked."""
        if not self._loaded:
            for n in self.isolated:
                info = self.registry.infos[n]
                info.isolated, info.status = True, "isolated"
            self.registry.load([n for n in self.selected if n not in self.isolated])
            self._loaded = True
        return [self.registry.infos[n] for n in self.selected]

    def strategies(self) -> list[tuple[str, Any]]:
        """``(plugin name, Strategy)`` of every strategy registered by an in-process plugin.

        Loads the plugins first when needed. Strategies of isolated plugins are not here:
        their worker runs them (``aitrados.trading.remote.RemoteStrategyRunner``) and attaches
        them to the ``trading`` service itself.
        """
        self.load()
        reg = self.registry
        return [(reg.strategy_plugins[n], s) for n, s in reg.strategies.items()]

    def remote_strategies(self) -> list[tuple[str, str, Any]]:
        """``(plugin, strategy name, StrategyNeeds)`` of the strategies isolated workers run.

        Known once a worker is ready (its ready line lists them). The middleware adds their
        charts and groups like those of in-process strategies, and a replay should start only
        after they attached to the ``trading`` service (they do so as soon as it is served).
        """
        from ..trading.strategy import StrategyNeeds

        if self.supervisor is None:
            return []
        out: list[tuple[str, str, Any]] = []
        for w in self.supervisor.workers.values():
            if w.status != "running":
                continue
            for item in w.strategies:
                try:
                    needs = msgspec.convert(item.get("needs") or {}, StrategyNeeds)
                except (msgspec.ValidationError, TypeError) as exc:
                    logger.error("worker {!r} listed strategy {!r} with unreadable needs: {}", w.name,
                                 item.get("name"), exc)
                    continue
                out.append((str(item.get("plugin")), str(item.get("name")), needs))
        return out

    @property
    def context(self) -> HostContext:
        """The ``HostContext`` given to ``on_startup`` (after ``start``)."""
        if self.context_obj is None:
            raise RuntimeError("the plugin host has not started; call start(middleware) first")
        return self.context_obj

    def loop_thread_run(self, coro: Any, timeout: float | None) -> Any:
        """Run *coro* on the host's loop and wait for its result."""
        if self.loop is None:
            coro.close()
            raise RuntimeError("the plugin host has not started")
        return self.loop.run(coro, timeout)

    # ---------------------------------------------------------------- start / stop
    def start(self, bus: Any) -> PluginHost:
        """Connect to *bus* (a running ``Middleware``, or the ``Endpoints`` of one) and start.

        Serves plugin services, calls ``on_startup``, subscribes to the event topics (returns
        once subscribed) and starts the isolated workers (returns once they are ready).
        Raises ``PluginLoadError`` in strict mode when any plugin failed.
        """
        if self.started:
            return self
        self.load()
        if isinstance(bus, Endpoints):
            endpoints, zctx, worker_address = bus, zmq.Context.instance(), bus.rpc_frontend
        else:
            self.middleware = bus
            endpoints, zctx = bus.endpoints("inproc"), bus.context
            b = bus.settings.bus
            worker_address = bus.endpoints("ipc" if b.enable_ipc else "tcp").rpc_frontend
        if self.isolated:
            self.supervisor = Supervisor(self.settings, worker_address, self.host_settings)
            for n in self.isolated:
                self.supervisor.add(n, [n])
            self.supervisor.start()
        try:
            self._start_local(endpoints, zctx)
            if self.supervisor is not None:
                self.supervisor.wait_ready(self.host_settings.worker_start_timeout)
                failed = [w for w in self.supervisor.workers.values() if w.status != "running"]
                for w in failed:
                    for n in w.plugins:
                        info = self.registry.infos[n]
                        info.reason = w.reason or f"worker {w.status}"
                if failed and self.strict:
                    raise PluginLoadError("isolated plugin(s) failed to start (strict mode): " + "; ".join(
                        f"{', '.join(w.plugins)}: {w.reason or w.status}" for w in failed))
        except BaseException:
            self.stop()
            raise
        return self

    def _start_local(self, endpoints: Endpoints, zctx: zmq.Context) -> None:
        self.loop = LoopThread().start()
        self.runner.loop = self.loop.loop
        self.context_obj = HostContext(self, endpoints, zctx)
        self.started = True
        bus = getattr(self.settings, "bus", None)
        services: list[Service] = [s for _, s in self.registry.services.values()]
        if self.in_worker:
            services.append(_WorkerControl(self, f"worker.{self.worker_name or '+'.join(self.selected)}"))
        else:
            services.append(_PluginsService(self))
        for svc in services:
            self._service_workers.append(ServiceWorker(svc, endpoints.rpc_backend, bus=bus, context=zctx).start())
        self.loop.run(self.runner.anotify("on_startup", host=self.context_obj), None)
        wanted = [p for p, h in EVENT_HOOKS.items() if self.runner.implemented(h)]
        self._pump_task = asyncio.run_coroutine_threadsafe(self._pump(endpoints, zctx, wanted), self.loop.loop)
        if not self._pump_ready.wait(15):
            raise RuntimeError(f"the plugin host could not subscribe to the bus at {endpoints.subscribe} "
                               f"within 15s{': ' + str(self._pump_error) if self._pump_error else ''}")
        if self._pump_error is not None:
            raise self._pump_error
        logger.debug("plugin host started: {} in-process ({}), {} isolated ({})", len(self.registry.loaded()),
                    ", ".join(self.registry.loaded()) or "-", len(self.isolated), ", ".join(self.isolated) or "-")

    async def _pump(self, endpoints: Endpoints, zctx: zmq.Context, prefixes: list[str]) -> None:
        """Receive events and call their hooks; first prove the subscription works with a probe."""
        bus = getattr(self.settings, "bus", None)
        sub = AsyncSubscriber(endpoints.subscribe, prefixes, bus=bus, context=zctx)
        ctx = self.context_obj
        assert ctx is not None
        try:
            early = await aprove(sub, ctx.publish, endpoints.subscribe, "plugins")
            self._pump_ready.set()
            for msg in early:
                await self._deliver(msg)
            while True:
                msg = await sub.recv()
                if msg is not None:
                    await self._deliver(msg)
        except asyncio.CancelledError:
            pass
        except BaseException as exc:
            self._pump_error = exc
            self._pump_ready.set()
            logger.exception("plugin event pump stopped: {}", exc)
        finally:
            sub.close()

    async def _deliver(self, msg: Any) -> None:
        """Call the hook a message's topic goes to (counted in ``events``)."""
        call = event_call(msg.topic, msg.data)
        if call is None:
            return
        hook, kwargs = call
        self.events[hook] = self.events.get(hook, 0) + 1
        await self.runner.anotify(hook, **kwargs)

    def stop(self) -> None:
        """Stop workers, the event pump and services; call ``on_shutdown``; close everything."""
        if self.supervisor is not None:
            self.supervisor.stop()
        if not self.started:
            return
        self.started = False
        loop = self.loop
        assert loop is not None
        if self._pump_task is not None:
            loop.loop.call_soon_threadsafe(self._pump_task.cancel)
            try:
                self._pump_task.result(5)
            except Exception:
                pass
        if self.context_obj is not None:
            try:
                loop.run(self.runner.anotify("on_shutdown", host=self.context_obj), 30)
            except Exception as exc:
                logger.error("on_shutdown did not finish: {}", exc)
            loop.loop.call_soon_threadsafe(self.context_obj.close_arpc)
        for w in self._service_workers:
            w.stop()
        self._service_workers.clear()
        loop.stop()
        self.runner.loop = None
        if self.context_obj is not None:
            self.context_obj.close()
        logger.debug("plugin host stopped")

    def __enter__(self) -> PluginHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- reports
    @property
    def checks_orders(self) -> bool:
        """True when a loaded plugin, in-process or in an isolated worker, implements ``check_order``.

        Such checks may wait on another process: callers run them off their event loop.
        """
        return self.runner.implemented("check_order") or (
            self.supervisor is not None and bool(self.supervisor.workers_with_hook("check_order")))

    def check_order(self, order: Any, context: Any = None) -> OrderCheck:
        """Ask every ``check_order`` hook about *order* (see ``HostContext.acheck_order``)."""
        return self.context.check_order(order, context)

    def status(self) -> dict[str, Any]:
        """Plugins (loaded/failed/isolated), hook error counts, events delivered, workers."""
        errors = self.runner.error_counts()
        plugins = []
        for n in self.selected:
            d = self.registry.infos[n].to_dict()
            d["errors"] = errors.get(n, {})
            plugins.append(d)
        return {"plugins": plugins, "events": dict(self.events), "strategies": dict(self.registry.strategy_plugins),
                "workers": self.supervisor.status() if self.supervisor is not None else []}


class _PluginsService(Service):
    """The ``plugins`` RPC service of a host: its plugins, error counts and workers."""

    name = "plugins"

    def __init__(self, host: PluginHost) -> None:
        self._host = host

    def status(self) -> dict[str, Any]:
        """Plugins (loaded/failed/isolated, hooks, error counts), events delivered, workers."""
        return self._host.status()

    async def check_order(self, order: Any, context: Any = None) -> dict[str, Any]:
        """Ask the plugins' check_order hooks about *order*: {accepted, reason, plugin}."""
        fut = asyncio.run_coroutine_threadsafe(self._host.context.acheck_order(order, context),
                                               self._host.loop.loop)  # type: ignore[union-attr]
        return (await asyncio.wrap_future(fut)).to_dict()


__all__ = ["EVENT_HOOKS", "HostContext", "PluginHost", "event_call"]
