"""The GIL's switch interval during a run: short, so the RPC router answers while bars flow.

The replay (WebSocket receive, hub, trading runtime) is CPU-bound Python on the runtime's thread
and holds the GIL most of the run; the RPC router, the pub/sub monitor and the services of the
middleware share the process. A thread that wants the GIL waits up to the switch interval (5 ms
by default) each time, so each hop of a round trip through this process could wait that long.
While a run is on, :class:`RunSwitchInterval` sets it to :data:`RUN_SWITCH_INTERVAL`; the
switches happen only when another thread actually waits, so the replay itself does not slow
(measured at 100 symbols: bars/s unchanged within noise, router ping p99 roughly halved).

Several runtimes may live in one process (tests, embedding): the first hold saves the process's
interval and the last release restores it.
"""

from __future__ import annotations

import sys
from typing import ClassVar

from .holds import ProcessHold

__all__ = ["RUN_SWITCH_INTERVAL", "RunSwitchInterval"]

#: Seconds between GIL hand-overs while a run is on (the report's writer uses the same value).
RUN_SWITCH_INTERVAL = 0.0005


class RunSwitchInterval(ProcessHold):
    """One run's hold on the switch interval: :meth:`hold` when its replay starts, :meth:`release`
    when the run is over. Both are idempotent and thread-safe."""

    _saved: ClassVar[float] = 0.0

    @classmethod
    def save(cls) -> None:
        """The first holder saves the process's own interval."""
        cls._saved = sys.getswitchinterval()

    @classmethod
    def apply(cls) -> None:
        """Shorten the interval to :data:`RUN_SWITCH_INTERVAL` (never lengthen it)."""
        sys.setswitchinterval(min(cls._saved, RUN_SWITCH_INTERVAL))

    @classmethod
    def restore(cls) -> None:
        """Put back the interval the first holder saved."""
        sys.setswitchinterval(cls._saved)
