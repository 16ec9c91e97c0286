"""Process-wide settings that several runs in one process share (tests, embedding): the first
run's hold saves the process's own state, every hold applies the run's, the last release restores.

Subclasses say what to save, apply and restore; :class:`ProcessHold` does the counting, once per
subclass, under a lock (holds and releases come from different threads).
"""

from __future__ import annotations

import threading
from typing import ClassVar

__all__ = ["ProcessHold"]


class ProcessHold:
    """One run's hold on a process-wide setting: :meth:`hold` and :meth:`release` are idempotent and
    thread-safe; ``save`` runs at the first hold, ``apply`` at every hold, ``restore`` at the last
    release."""

    _lock: ClassVar[threading.Lock]
    _holders: ClassVar[int]

    def __init_subclass__(cls, **kw: object) -> None:
        super().__init_subclass__(**kw)
        cls._lock = threading.Lock()
        cls._holders = 0

    def __init__(self) -> None:
        #: True between :meth:`hold` and :meth:`release`.
        self.held = False

    @classmethod
    def save(cls) -> None:
        """Note the process's own state (before any run held it)."""

    @classmethod
    def apply(cls) -> None:
        """Put the run's setting in place."""

    @classmethod
    def restore(cls) -> None:
        """Put back what ``save`` noted."""

    def hold(self) -> None:
        """Start this run's hold (nothing if it is on already)."""
        cls = type(self)
        with cls._lock:
            if self.held:
                return
            self.held = True
            if cls._holders == 0:
                cls.save()
            cls._holders += 1
            cls.apply()

    def release(self) -> None:
        """End this run's hold (nothing if it is off); the last one restores."""
        cls = type(self)
        with cls._lock:
            if not self.held:
                return
            self.held = False
            cls._holders -= 1
            if cls._holders == 0:
                cls.restore()
