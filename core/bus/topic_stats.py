"""Per-topic statistics of the pub/sub router, bounded in memory and cheap to read.

Pure logic, no sockets: the router's monitor thread feeds it the (topic, publisher id,
sequence number) of every message it samples and calls :meth:`TopicStats.tick` about once a
second. Everything O(topics) happens in that thread; readers (the RPC router answering
``middleware.topics``) get an already encoded snapshot, so a read costs the same for ten
topics as for ten thousand.

A topic's ``count`` is the sum, over its publishers, of the highest sequence number seen: the
number of messages published on it since each publisher started, including messages the
monitor did not sample and messages nobody received. Publishers silent for ``ttl`` seconds
are retired (their count stays in the topic's total) and topics silent that long are
forgotten; at most ``max_topics`` topics are tracked, further new topics are counted in
``untracked`` until older ones expire.
"""

from __future__ import annotations

from typing import Any

import msgspec

from . import protocol as P


class _Topic:
    __slots__ = ("seqs", "seen", "retired", "rate", "prev_count")

    def __init__(self, now: float) -> None:
        self.seqs: dict[bytes, int] = {}  # publisher id -> highest sequence seen
        self.seen: dict[bytes, float] = {}  # publisher id -> last time seen (monotonic)
        self.retired = 0  # messages of publishers that went silent
        self.rate = 0.0
        self.prev_count = 0

    def count(self) -> int:
        return self.retired + sum(self.seqs.values())


class TopicStats:
    """Counts, rates and publishers per topic, capped at *max_topics* and expiring after *ttl* s.

    Not thread-safe except :meth:`encoded`, which any thread may call.

    :param max_topics: most topics tracked at once
    :param ttl: seconds after which a silent publisher is retired and a silent topic forgotten
    """

    def __init__(self, max_topics: int = 10_000, ttl: float = 300.0) -> None:
        self.max_topics = max_topics
        self.ttl = ttl
        self.topics: dict[bytes, _Topic] = {}
        self.untracked = 0
        self.expired = 0
        self._last_tick: float | None = None
        self._encoded = msgspec.Raw(P.encode({}))

    def observe(self, topic: bytes, pid: bytes, seq: int, now: float) -> None:
        """Record a message: *seq* from publisher *pid* on *topic* (already validated), seen at *now*."""
        t = self.topics.get(topic)
        if t is None:
            if len(self.topics) >= self.max_topics:
                self.untracked += 1
                return
            t = self.topics[topic] = _Topic(now)
        if seq > t.seqs.get(pid, 0):
            t.seqs[pid] = seq
        t.seen[pid] = now

    def tick(self, now: float) -> None:
        """Update rates, retire silent publishers, forget silent topics and re-encode the snapshot."""
        span = now - self._last_tick if self._last_tick is not None else 0.0
        # whatever spoke since the previous tick is kept, however short the ttl: it shows once
        cutoff = min(now - self.ttl, self._last_tick if self._last_tick is not None else now)
        self._last_tick = now
        out: dict[str, Any] = {}
        for name, t in list(self.topics.items()):
            for pid, seen in list(t.seen.items()):
                if seen < cutoff:
                    t.retired += t.seqs.pop(pid, 0)
                    del t.seen[pid]
            if not t.seqs:
                del self.topics[name]
                self.expired += 1
                continue
            c = t.count()
            t.rate = (c - t.prev_count) / span if span > 0 else 0.0
            t.prev_count = c
            out[name.decode()] = {"count": c, "publishers": len(t.seqs), "rate": round(t.rate, 1)}
        self._encoded = msgspec.Raw(P.encode(out))

    def encoded(self) -> msgspec.Raw:
        """The last snapshot, ``{topic: {count, publishers, rate}}`` MessagePack-encoded (O(1) to read)."""
        return self._encoded

    def snapshot(self) -> dict[str, Any]:
        """The last snapshot decoded (for tests and in-process callers)."""
        return P.decode(bytes(self._encoded))
