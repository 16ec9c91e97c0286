"""What the RPC router remembers about each peer: dropped messages, refusals, cut-offs, requests in flight.

The router never blocks on a peer: a message a peer cannot take right now (its queue is at the
high-water mark) is dropped and counted against that peer. A peer that refuses
``refusal_limit`` messages in a row is *cut off* for ``cutoff_seconds``: its requests are
discarded unread and, for a worker, it is unregistered. The ledger is used from the router's
thread only (no locks).
"""

from __future__ import annotations

from collections import OrderedDict

#: How many peers the per-peer drop counters keep (the oldest entry is forgotten first).
MAX_TRACKED_PEERS = 1024


class PeerLedger:
    """Per-peer counters of one router.

    :param refusal_limit: undeliverable messages in a row after which a peer is cut off
    :param cutoff_seconds: how long a cut-off peer stays cut off
    """

    def __init__(self, refusal_limit: int, cutoff_seconds: float) -> None:
        self.refusal_limit = refusal_limit
        self.cutoff_seconds = cutoff_seconds
        self.dropped: OrderedDict[bytes, int] = OrderedDict()
        self.strikes: dict[bytes, int] = {}
        self.cut_until: dict[bytes, float] = {}
        self.inflight: dict[bytes, int] = {}
        self.cut_offs = 0
        self.discarded = 0
        self.total_dropped = 0

    def refused(self, peer: bytes, now: float) -> bool:
        """Count one message *peer* could not take; returns True when this refusal cuts it off."""
        self.total_dropped += 1
        n = self.dropped.pop(peer, 0) + 1
        self.dropped[peer] = n
        while len(self.dropped) > MAX_TRACKED_PEERS:
            self.dropped.popitem(last=False)
        s = self.strikes[peer] = self.strikes.get(peer, 0) + 1
        if s >= self.refusal_limit and peer not in self.cut_until:
            self.cut_until[peer] = now + self.cutoff_seconds
            self.cut_offs += 1
            return True
        return False

    def delivered(self, peer: bytes) -> None:
        """*peer* took a message: its refusals in a row start again from zero."""
        if self.strikes:
            self.strikes.pop(peer, None)

    def is_cut(self, peer: bytes, now: float) -> bool:
        """True while *peer* is cut off (expired cut-offs are lifted here)."""
        until = self.cut_until.get(peer)
        if until is None:
            return False
        if now >= until:
            del self.cut_until[peer]
            self.strikes.pop(peer, None)
            return False
        return True

    def purge(self, now: float) -> None:
        """Forget expired cut-offs and, past ``MAX_TRACKED_PEERS``, the oldest refusal streaks
        (peers that went away must not grow the ledger forever)."""
        for peer in [p for p, t in self.cut_until.items() if t <= now]:
            del self.cut_until[peer]
            self.strikes.pop(peer, None)
        extra = len(self.strikes) - MAX_TRACKED_PEERS
        if extra > 0:
            for peer in list(self.strikes)[:extra]:
                if peer not in self.cut_until:
                    del self.strikes[peer]

    def discard(self) -> None:
        """Count one message of a cut-off peer thrown away unread."""
        self.discarded += 1

    # ---------------------------------------------------------------- requests in flight
    def inflight_of(self, client: bytes) -> int:
        """Requests of *client* forwarded to workers and not yet answered."""
        return self.inflight.get(client, 0)

    def opened(self, client: bytes) -> None:
        """One more request of *client* is in flight."""
        self.inflight[client] = self.inflight.get(client, 0) + 1

    def closed(self, client: bytes) -> None:
        """One request of *client* was answered (or its worker was lost)."""
        n = self.inflight.get(client, 0) - 1
        if n > 0:
            self.inflight[client] = n
        else:
            self.inflight.pop(client, None)

    def stats(self, now: float, top: int = 20) -> dict[str, object]:
        """Counters for ``middleware.stats``: totals, the worst peers by drops, the peers cut off now."""
        worst = sorted(self.dropped.items(), key=lambda kv: kv[1], reverse=True)[:top]
        return {
            "dropped": self.total_dropped,
            "dropped_by_peer": {p.hex(): n for p, n in worst},
            "cut_offs": self.cut_offs,
            "cut_off_now": [p.hex() for p, t in self.cut_until.items() if t > now],
            "discarded_from_cut_off": self.discarded,
        }
