"""The signal stage: signal modules run in step with the replay, in-process or isolated alike.

Without it a signal module is an ordinary plugin: its hooks run when a plugin host's bus pump
gets round to the event, so a strategy could see a bar's signals before or after that bar, or
steps later. The stage closes that gap. The trading runtime hands it every market event it takes
from the hub (a closed bar, a news item, a calendar event) within that event's step; the stage
feeds the event to each signal module (a plugin holding an
:class:`~aitrados.signals.publish.SignalModule`) and returns what they produced, in the order of
the selected plugins:

* a module in the middleware's process: the stage calls its hook itself and collects the signals
  (:func:`~aitrados.signals.publish.capture`);
* a module in an isolated worker: the stage asks the worker's control service
  (``worker.<name>.signals(kind, payload)``), which does the same there and answers the signals:
  one RPC round trip per event, the same signals in the same place of the stream as in-process.

The runtime then publishes the signals on the publisher the hub's own events go through and
delivers them to its strategies' ``on_signal``: a bar's just before the bar, a news item's or
calendar event's just after it (:data:`SIGNALS_FIRST`; docs/signals.md, "Strategies and the step
guarantee"). Fed modules are ``synced``: the bus pump's copies of the events are ignored, so
each signal is computed and published once.

The calls run in a worker thread, one module at a time: a module that waits on an LLM or calls a
middleware service over RPC does not stall the runtime's loop. A hook that raises, or a worker
that fails to answer, is logged and counted against its plugin like any hook; the others still
run. An ``async`` hook runs to completion in that thread with its own event loop (so it must not
use the host's loop-bound clients such as ``host.arpc``; ``host.rpc`` works).
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import msgspec
from loguru import logger

from ..events import CALLBACKS, Kind, decode
from .publish import capture, signal_modules_of
from .record import Signal

__all__ = ["SIGNALS_FIRST", "STAGE_KINDS", "SignalStage", "worker_signals"]

#: The market events signal modules are fed in step: kind -> the hook's argument name.
STAGE_KINDS: dict[Kind, str] = {Kind.BAR: "bar", Kind.NEWS: "item", Kind.CALENDAR: "event"}
#: Kinds whose signals strategies get *before* the event itself. The hub publishes a closed bar
#: after its consumers ran (fills first), a news item or calendar event before: signals are published
#: while the consumers run, so this is the order a subscriber in another process sees, and the
#: in-process delivery follows it.
SIGNALS_FIRST: frozenset[Kind] = frozenset({Kind.BAR})
#: Seconds an isolated signal module's worker may take to answer one event.
WORKER_TIMEOUT = 30.0


class SignalStage:
    """The signal modules of a plugin host (in-process and in its isolated workers), fed market events in order.

    :param host: a started ``PluginHost``
    :param workers: also ask the host's isolated workers for theirs (False in a worker itself)
    """

    def __init__(self, host: Any, workers: bool = True) -> None:
        self.host = host
        pm = host.registry.pm
        #: Plugin name -> its signal modules (in-process plugins only).
        self.plugins: dict[str, list[Any]] = {}
        for name in host.registry.loaded():
            mods = signal_modules_of(pm.get_plugin(name))
            if mods:
                self.plugins[name] = mods
        for mods in self.plugins.values():
            for m in mods:
                m.synced = True  # from now on the bus pump's copies of these events are ignored by them
        #: Isolated plugin name -> the control service of the worker running it (signal modules only).
        self.remote: dict[str, str] = self._remote_modules() if workers else {}
        order = {n: i for i, n in enumerate(host.selected)}
        #: Kind -> what is fed, in the order of the selected plugins: ``(plugin, hook impl or worker service)``.
        self.sources: dict[Kind, list[tuple[str, Any]]] = {}
        for k in STAGE_KINDS:
            local = [(i.plugin_name, i) for i in host.runner.impls(CALLBACKS[k]) if i.plugin_name in self.plugins]
            both = local + list(self.remote.items())
            self.sources[k] = sorted(both, key=lambda pi: order.get(pi[0], len(order)))
        #: Signals produced through the stage.
        self.produced = 0
        #: The kinds whose signals strategies get before the event (:data:`SIGNALS_FIRST`).
        self.signals_first = SIGNALS_FIRST

    def _remote_modules(self) -> dict[str, str]:
        """Ask each running isolated worker whether it holds signal modules (it syncs them when so)."""
        sup = getattr(self.host, "supervisor", None)
        if sup is None:
            return {}
        out: dict[str, str] = {}
        for w in sup.workers.values():
            if w.status != "running":
                continue
            try:
                names = self.host.context.rpc.call(w.service, "signals", kind=None, payload=None,
                                                   timeout=WORKER_TIMEOUT)
            except Exception as exc:  # an older worker or one going down: its plugins publish on their own
                logger.warning("isolated plugin(s) {}: no signal stage ({}: {}); their signals, if any, are "
                               "not in step with the replay", ", ".join(w.plugins), type(exc).__name__, exc)
                continue
            for n in names or ():
                out[str(n)] = w.service
        return out

    @classmethod
    def of(cls, host: Any) -> SignalStage | None:
        """The stage of *host*'s signal modules (in-process and isolated); None when it has none."""
        stage = cls(host)
        if not stage.plugins and not stage.remote:
            return None
        names = [*stage.plugins, *(f"{n} (isolated)" for n in stage.remote)]
        logger.info("signal modules in step with the replay: {}", ", ".join(names))
        return stage

    def close(self) -> None:
        """Hand the in-process modules back to the bus pump (``synced`` off)."""
        for mods in self.plugins.values():
            for m in mods:
                m.synced = False

    async def run(self, kind: Kind | str, obj: Any) -> list[Signal]:
        """Feed one market event (as the hub hands it) to the signal modules; returns their signals in order.

        Live (still-forming) bars and other kinds give nothing. Signals that fail
        ``Signal.validate()`` are logged and dropped.
        """
        k = Kind(kind)
        sources = self.sources.get(k)
        if not sources or (k is Kind.BAR and not getattr(obj, "closed", True)):
            return []
        signals = await asyncio.to_thread(self._call, k, sources, obj)
        out: list[Signal] = []
        for s in signals:
            try:
                out.append(s.validate())
            except (ValueError, AttributeError) as exc:
                logger.error("signal module produced a bad signal, dropped: {}: {!r}", exc, s)
        self.produced += len(out)
        return out

    def _call(self, kind: Kind, sources: list[tuple[str, Any]], obj: Any) -> list[Signal]:
        hook, arg = CALLBACKS[kind], STAGE_KINDS[kind]
        out: list[Signal] = []
        for plugin, source in sources:
            try:
                if isinstance(source, str):  # an isolated module: its worker runs the hook and answers
                    got = self.host.context.rpc.call(source, "signals", kind=kind.value, payload=obj,
                                                     timeout=WORKER_TIMEOUT)
                    out += [decode(Kind.SIGNAL, s) for s in got or ()]
                    continue
                with capture() as mine:
                    r = source.function(**({arg: obj} if arg in source.argnames else {}))
                    if inspect.iscoroutine(r):  # run here, inside the capture (not on the host's loop)
                        asyncio.run(r)
                out += mine
            except Exception as exc:
                self.host.runner._failed(plugin, hook, exc)
        return out


async def worker_signals(host: Any, kind: str | None, payload: Any) -> Any:
    """What an isolated worker's ``signals`` RPC answers (``worker.<name>.signals``).

    With *kind* None: hand this worker's signal modules to the parent's stage (``synced`` from now on)
    and return their plugin names. Otherwise run their hook for one market event of *kind* (its bus
    payload) and return their signals as maps, in order.
    """
    stage: SignalStage | None = getattr(host, "signal_stage", None)
    if stage is None:
        stage = host.signal_stage = SignalStage(host, workers=False)
    if kind is None:
        return list(stage.plugins)
    k = Kind(kind)
    if k not in STAGE_KINDS:
        raise ValueError(f"signals: kind must be one of {', '.join(x.value for x in STAGE_KINDS)}, got {kind!r}")
    return [msgspec.to_builtins(s) for s in await stage.run(k, decode(k, payload))]
