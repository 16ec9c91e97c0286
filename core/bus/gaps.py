"""Messages subscribers missed, per topic prefix: the gap ledger of a process.

Every subscriber detects gaps from the publishers' sequence numbers (:mod:`.pubsub`). A gap is
rare, so each one is also added here, to the ledger of the process the subscriber runs in
(:data:`LEDGER`), under the topic's first dotted part (``ohlc``, ``fill``, ...): nothing is
done per message. Other processes send their ledger to the middleware when it changed
(:class:`GapReporter`, ``middleware.report_gaps``; isolated strategy workers do). The pub/sub
router puts its own process's ledger (the dashboard, the trading engine, in-process services
and strategies) plus those reports (:class:`GapReports`) into ``middleware.stats``
(``pubsub.gaps``), and the dashboard's ``/metrics`` serves it as
``aitrados_pubsub_gaps_total{prefix}``.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Mapping
from typing import Any

#: Most prefixes a ledger keeps; beyond it gaps go under ``_other``.
MAX_PREFIXES = 1000


def topic_prefix(topic: str) -> str:
    """The first dotted part of a topic (``ohlc.STOCK:US:SPX.DAY`` -> ``ohlc``)."""
    return topic.split(".", 1)[0]


class GapLedger:
    """Running totals of missed messages per topic prefix, for the subscribers of one process (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._missed: dict[str, int] = {}

    def record(self, topic: str, missed: int) -> None:
        """Add *missed* messages lost on *topic* (called by a subscriber when it sees a gap)."""
        p = topic_prefix(topic)
        with self._lock:
            if p not in self._missed and len(self._missed) >= MAX_PREFIXES:
                p = "_other"
            self._missed[p] = self._missed.get(p, 0) + missed

    def snapshot(self) -> dict[str, int]:
        """``{prefix: missed}`` since the process started."""
        with self._lock:
            return dict(self._missed)


#: The ledger of this process (every ``Subscriber`` and ``AsyncSubscriber`` adds its gaps to it).
LEDGER = GapLedger()


#: Most other processes whose reports :class:`GapReports` keeps (the oldest report is forgotten first).
MAX_REPORTERS = 256
#: Most prefixes one report may carry.
MAX_REPORTED_PREFIXES = 100


def process_id() -> str:
    """This process as a reporter: ``pid@host``."""
    return f"{os.getpid()}@{socket.gethostname()}"


class GapReports:
    """The running totals other processes reported (``middleware.report_gaps``), summed with this
    process's ledger. A report replaces the reporter's previous one, so a lost or repeated
    report never miscounts; a report in this process's own name is ignored (its ledger counts).

    :param ledger: this process's ledger
    """

    def __init__(self, ledger: GapLedger = LEDGER) -> None:
        self.ledger = ledger
        self._lock = threading.Lock()
        self._reports: dict[str, dict[str, int]] = {}

    def report(self, reporter: Any, gaps: Any) -> None:
        """Keep *reporter*'s running totals ``{prefix: missed}``.

        :raises ValueError: for a reporter that is not a string of 1..255 characters or totals
            that are not ``{prefix: non-negative int}`` with at most ``MAX_REPORTED_PREFIXES``
            prefixes (nothing is kept then)
        """
        if not isinstance(reporter, str) or not 0 < len(reporter) <= 255:
            raise ValueError("reporter must be a string of 1..255 characters ('pid@host')")
        if not isinstance(gaps, Mapping) or len(gaps) > MAX_REPORTED_PREFIXES or not all(
                isinstance(k, str) and 0 < len(k) <= 255 and isinstance(v, int) and not isinstance(v, bool) and v >= 0
                for k, v in gaps.items()):
            raise ValueError(f"gaps must be {{prefix: missed}}: at most {MAX_REPORTED_PREFIXES} string prefixes "
                             "with non-negative integer counts")
        if reporter == process_id():
            return
        with self._lock:
            self._reports.pop(reporter, None)
            if len(self._reports) >= MAX_REPORTERS:
                del self._reports[next(iter(self._reports))]
            self._reports[reporter] = dict(gaps)

    def totals(self) -> dict[str, int]:
        """``{prefix: missed}``: this process's subscribers plus every reported process."""
        out = self.ledger.snapshot()
        with self._lock:
            reports = list(self._reports.values())
        for r in reports:
            for p, n in r.items():
                out[p] = out.get(p, 0) + n
        return out


class GapReporter:
    """Sends this process's ledger to the middleware (``middleware.report_gaps``) when it changed.

    For processes other than the middleware's whose subscribers should count bus-wide (isolated
    strategy workers call :meth:`report` on their state tick).

    :param call: ``RPCClient.call`` of a client of the middleware
    :param ledger: the ledger to send (this process's by default)
    """

    def __init__(self, call: Callable[..., Any], ledger: GapLedger = LEDGER) -> None:
        self._call = call
        self.ledger = ledger
        self._sent: dict[str, int] = {}

    def report(self) -> bool:
        """Send the ledger if it changed since the last report that went through; True when sent.

        :raises aitrados.bus.errors.BusError: when the call fails (the next report sends it again)
        """
        full = self.ledger.snapshot()
        if full == self._sent:
            return False
        snap = full
        if len(snap) > MAX_REPORTED_PREFIXES:  # the most missed first
            snap = dict(sorted(snap.items(), key=lambda kv: -kv[1])[:MAX_REPORTED_PREFIXES])
        self._call("middleware", "report_gaps", reporter=process_id(), gaps=snap)
        self._sent = full
        return True
