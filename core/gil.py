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
import threading

__all__ = ["RUN_SWITCH_INTERVAL", "RunSwitchInterval"]

#: Seconds between GIL hand-overs while a run is on (the report's writer uses the same value).
RUN_SWITCH_INTERVAL = 0.0005

_lock = threading.Lock()
_holders = 0
_saved = 0.0


class RunSwitchInterval:
    """One run's hold on the switch interval: :meth:`hold` when its replay starts, :meth:`release`
    when the run is over. Both are idempotent and thread-safe."""

    def __init__(self) -> None:
        #: True between :meth:`hold` and :meth:`release`.
        self.held = False

    def hold(self) -> None:
        """Shorten the interval to :data:`RUN_SWITCH_INTERVAL` (never lengthen it); the first holder
        saves the process's own."""
        global _holders, _saved
        with _lock:
            if self.held:
                return
            self.held = True
            if _holders == 0:
                _saved = sys.getswitchinterval()
            _holders += 1
            sys.setswitchinterval(min(_saved, RUN_SWITCH_INTERVAL))

    def release(self) -> None:
        """End this hold; the last one restores the interval the first holder saved."""
        global _holders
        with _lock:
            if not self.held:
                return
            self.held = False
            _holders -= 1
            if _holders == 0:
                sys.setswitchinterval(_saved)
