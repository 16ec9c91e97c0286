"""Messages subscribers missed, per topic prefix: the gap ledger of a process.

Every subscriber detects gaps from the publishers' sequence numbers (:mod:`.pubsub`). A gap is
rare, so each one is also added here, to the ledger of the process the subscriber runs in
(:data:`LEDGER`), under the topic's first dotted part (``ohlc``, ``fill``, ...): nothing is
done per message. The pub/sub router puts its process's ledger (the subscribers of the
middleware's process: the dashboard, the trading engine, in-process services and strategies)
into ``middleware.stats`` (``pubsub.gaps``), and the dashboard's ``/metrics`` serves it as
``aitrados_pubsub_gaps_total{prefix}``.
"""

from __future__ import annotations

import threading

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
