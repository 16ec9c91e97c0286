"""The router's per-peer ledger: refusals in a row cut a peer off, delivery forgives, cut-offs expire, memory is bounded."""

from __future__ import annotations

from aitrados.bus.peers import MAX_TRACKED_PEERS, PeerLedger


def test_refusals_in_a_row_cut_off_and_expire() -> None:
    led = PeerLedger(refusal_limit=3, cutoff_seconds=10)
    assert not led.refused(b"a", 0) and not led.refused(b"a", 0)
    led.delivered(b"a")  # a delivery in between: the streak starts again
    assert not led.refused(b"a", 1) and not led.refused(b"a", 1)
    assert led.refused(b"a", 1) and led.is_cut(b"a", 5)
    assert not led.refused(b"a", 2)  # already cut: not cut again
    assert not led.is_cut(b"a", 11.5)  # expired: the peer gets another chance
    st = led.stats(12)
    assert st["dropped"] == 6 and st["dropped_by_peer"] == {b"a".hex(): 6} and st["cut_offs"] == 1
    assert st["cut_off_now"] == []


def test_inflight_counts_per_client() -> None:
    led = PeerLedger(10, 1)
    led.opened(b"c")
    led.opened(b"c")
    led.closed(b"c")
    assert led.inflight_of(b"c") == 1
    led.closed(b"c")
    led.closed(b"c")  # never below zero, and the entry is gone
    assert led.inflight_of(b"c") == 0 and led.inflight == {}


def test_memory_is_bounded_when_many_peers_come_and_go() -> None:
    led = PeerLedger(refusal_limit=2, cutoff_seconds=1)
    for i in range(MAX_TRACKED_PEERS * 3):
        peer = i.to_bytes(4, "big")
        led.refused(peer, 0)
        led.refused(peer, 0)  # each one cut off
    led.purge(2.0)
    assert len(led.dropped) <= MAX_TRACKED_PEERS and led.cut_until == {} and len(led.strikes) <= MAX_TRACKED_PEERS
    assert led.total_dropped == MAX_TRACKED_PEERS * 6
