"""What a signal plugin keeps between hooks: the host to publish through and its analysis model."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from .record import Signal


class SignalModule:
    """The host and model of one signal plugin; :meth:`feed` runs the model and publishes its signals.

    Hooks may be called from the host's loop and, for isolated plugins, a worker's: the model is
    used under a lock, and publishing is thread-safe.
    """

    def __init__(self) -> None:
        self.host: Any = None
        self.model: Any = None
        self.published = 0
        self._lock = threading.Lock()

    def start(self, host: Any, model: Any) -> None:
        """Keep *host* (``HostContext``) and *model* (the plugin's analysis state)."""
        with self._lock:
            self.host, self.model = host, model

    def feed(self, step: Callable[[Any], list[Signal]]) -> int:
        """Run ``step(model)`` and publish each signal on its topic; returns how many (0 before ``start``)."""
        with self._lock:
            if self.host is None or self.model is None:
                return 0
            signals = step(self.model)
        for s in signals:
            self.host.publish(s.topic, s)
        self.published += len(signals)
        return len(signals)


__all__ = ["SignalModule"]
