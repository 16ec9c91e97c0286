"""The signal stage: in-process signal modules run in step with the replay, before strategies.

Without it a signal module is an ordinary plugin: its hooks run when the plugin host's bus
pump gets round to the event, so a strategy could see a bar's signals before or after that bar,
or steps later. The stage closes that gap. The trading runtime hands it every market event it
takes from the hub (a closed bar, a news item, a calendar event) within that event's step; the stage calls the matching hook of each in-process signal module (a plugin holding
an :class:`~aitrados.signals.publish.SignalModule`), collects what they produce
(:func:`~aitrados.signals.publish.capture`) and returns it. The runtime then publishes those
signals on the publisher the hub's own events go through and delivers them to its strategies'
``on_signal``: a bar's just before the bar, a news item's or calendar event's just after it
(:data:`SIGNALS_FIRST`; docs/signals.md, "Step guarantee").

The hooks run in a worker thread (one at a time, in plugin order): a module that waits on an
LLM or calls a middleware service over RPC does not stall the runtime's loop. A hook that raises
is logged and counted against its plugin like any hook; the others still run. An ``async``
hook runs to completion in that thread with its own event loop (so it must not use the host's
loop-bound clients such as ``host.arpc``; ``host.rpc`` works).
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

from loguru import logger

from ..events import CALLBACKS, Kind
from .publish import capture, signal_modules_of
from .record import Signal

__all__ = ["SIGNALS_FIRST", "STAGE_KINDS", "SignalStage"]

#: The market events signal modules are fed in step: kind -> the hook's argument name.
STAGE_KINDS: dict[Kind, str] = {Kind.BAR: "bar", Kind.NEWS: "item", Kind.CALENDAR: "event"}
#: Kinds whose signals strategies get *before* the event itself. The hub publishes a closed bar
#: after its consumers ran (fills first), a news item or calendar event before: signals are published
#: while the consumers run, so this is the order a subscriber in another process sees, and the
#: in-process delivery follows it.
SIGNALS_FIRST: frozenset[Kind] = frozenset({Kind.BAR})


class SignalStage:
    """The in-process signal modules of a plugin host, fed market events in replay order.

    :param host: a started ``PluginHost`` (its in-process plugins are searched for signal modules)
    """

    def __init__(self, host: Any) -> None:
        self.host = host
        pm = host.registry.pm
        #: Plugin name -> its signal modules (in-process plugins only; isolated ones publish on their own).
        self.plugins: dict[str, list[Any]] = {}
        for name in host.registry.loaded():
            mods = signal_modules_of(pm.get_plugin(name))
            if mods:
                self.plugins[name] = mods
        #: Kind -> the hook implementations of the signal modules, in pluggy's call order.
        self.impls: dict[Kind, list[Any]] = {
            k: [i for i in host.runner.impls(CALLBACKS[k]) if i.plugin_name in self.plugins] for k in STAGE_KINDS}
        for mods in self.plugins.values():
            for m in mods:
                m.synced = True  # from now on the bus pump's copies of these events are ignored by them
        #: Signals produced through the stage.
        self.produced = 0

    @classmethod
    def of(cls, host: Any) -> SignalStage | None:
        """The stage of *host*'s in-process signal modules; None when it has none."""
        stage = cls(host)
        if not stage.plugins:
            return None
        logger.info("signal modules in step with the replay: {}", ", ".join(stage.plugins))
        return stage

    def close(self) -> None:
        """Hand the modules back to the bus pump (``synced`` off)."""
        for mods in self.plugins.values():
            for m in mods:
                m.synced = False

    async def run(self, kind: Kind | str, obj: Any) -> list[Signal]:
        """Feed one market event (as the hub hands it) to the signal modules; returns their signals in order.

        Live (still-forming) bars and other kinds give nothing. Signals that fail
        ``Signal.validate()`` are logged and dropped.
        """
        k = Kind(kind)
        impls = self.impls.get(k)
        if not impls or (k is Kind.BAR and not getattr(obj, "closed", True)):
            return []
        signals = await asyncio.to_thread(self._call, k, impls, obj)
        out: list[Signal] = []
        for s in signals:
            try:
                out.append(s.validate())
            except (ValueError, AttributeError) as exc:
                logger.error("signal module produced a bad signal, dropped: {}: {!r}", exc, s)
        self.produced += len(out)
        return out

    def _call(self, kind: Kind, impls: list[Any], obj: Any) -> list[Signal]:
        hook, arg = CALLBACKS[kind], STAGE_KINDS[kind]
        with capture() as out:
            for impl in impls:
                try:
                    r = impl.function(**({arg: obj} if arg in impl.argnames else {}))
                    if inspect.iscoroutine(r):  # run here, inside the capture (not on the host's loop)
                        asyncio.run(r)
                except Exception as exc:
                    self.host.runner._failed(impl.plugin_name, hook, exc)
        return out
