"""What a signal plugin keeps between hooks: the host to publish through and its analysis model."""

from __future__ import annotations

import threading
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from .record import Signal

#: The signals list of the :func:`capture` active in this thread, if any.
_SINK = threading.local()


@contextmanager
def capture() -> Iterator[list[Signal]]:
    """Collect, instead of publishing, what :meth:`SignalModule.feed` gives in this thread meanwhile.

    The replay's signal stage (:mod:`aitrados.signals.stage`) calls the signal modules' hooks
    inside it, then publishes and delivers the signals itself, in step with the replay.
    Yields the list the signals are appended to, in production order.
    """
    out: list[Signal] = []
    prev = getattr(_SINK, "out", None)
    _SINK.out = out
    try:
        yield out
    finally:
        _SINK.out = prev


class SignalModule:
    """The host and model of one signal plugin; :meth:`feed` runs the model and publishes its signals.

    Hooks may be called from the host's loop and, for isolated plugins, a worker's: the model is
    used under a lock, and publishing is thread-safe. A plugin holding one as a module attribute
    is a *signal module*: in a middleware's process the runtime calls its market hooks itself, in
    step with the replay (``synced``), and the bus's copies of those events are ignored.
    """

    def __init__(self) -> None:
        self.host: Any = None
        self.model: Any = None
        self.published = 0
        #: True while the runtime's signal stage feeds this module (then only its calls count).
        self.synced = False
        self._lock = threading.Lock()

    def start(self, host: Any, model: Any) -> None:
        """Keep *host* (``HostContext``) and *model* (the plugin's analysis state); not ``synced``
        until a runtime's signal stage takes the module over again."""
        with self._lock:
            self.host, self.model = host, model
            self.synced = False

    def feed(self, step: Callable[[Any], list[Signal]]) -> int:
        """Run ``step(model)`` and publish each signal on its topic; returns how many (0 before ``start``).

        Inside :func:`capture` the signals go to the capture's list instead of the bus. While
        ``synced``, a call outside a capture (the bus pump's copy of an event the stage already
        fed) is ignored and returns 0.
        """
        sink: list[Signal] | None = getattr(_SINK, "out", None)
        if self.synced and sink is None:
            return 0
        with self._lock:
            if self.host is None or self.model is None:
                return 0
            signals = step(self.model)
        if sink is not None:
            sink.extend(signals)
        else:
            for s in signals:
                self.host.publish(s.topic, s)
        self.published += len(signals)
        return len(signals)


def signal_modules_of(plugin: Any) -> list[SignalModule]:
    """The :class:`SignalModule` objects a plugin (a module, or an object and its class) holds as attributes."""
    out: list[SignalModule] = []
    for holder in (plugin, type(plugin)):
        try:
            values = vars(holder).values()
        except TypeError:
            continue
        out += [v for v in values if isinstance(v, SignalModule) and v not in out]
        if isinstance(plugin, (type, types.ModuleType)):
            break
    return out


__all__ = ["SignalModule", "capture", "signal_modules_of"]
