"""fastio's drain and readable on real sockets: whole messages in order, the limit, and a descriptor
that still signals the next arrival after either way a drain ends (a lone message or a burst)."""

from __future__ import annotations

import select
import time
from collections.abc import Iterator

import pytest
import zmq

from aitrados.bus.fastio import drain, readable, send_frames

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def pair(ipc_dir: str) -> Iterator[tuple[zmq.Socket, zmq.Socket]]:
    """A DEALER sender and a DEALER receiver over ipc (the transport the bus uses between processes)."""
    ctx = zmq.Context()
    rx, tx = ctx.socket(zmq.DEALER), ctx.socket(zmq.DEALER)
    rx.linger = tx.linger = 0
    addr = f"ipc://{ipc_dir}/fastio.sock"
    rx.bind(addr)
    tx.connect(addr)
    yield tx, rx
    tx.close()
    rx.close()
    ctx.term()


def wait_readable(sock: zmq.Socket, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not readable(sock):
        assert time.monotonic() < deadline, "no message arrived"
        time.sleep(0.001)


def test_empty_socket_drains_nothing(pair: tuple[zmq.Socket, zmq.Socket]) -> None:
    _, rx = pair
    got: list[list[bytes]] = []
    assert not readable(rx)
    assert drain(rx, got.append, 10) == 0
    assert got == []


def test_messages_keep_their_frames_and_order_and_the_limit_holds(pair: tuple[zmq.Socket, zmq.Socket]) -> None:
    tx, rx = pair
    messages = [[b"a"], [b"b1", b"b2", b"b3", b"b4"], [b"c1", b""], [b"d"], [b"e1", b"e2"]]
    for m in messages:
        send_frames(tx, m)
    got: list[list[bytes]] = []
    deadline = time.monotonic() + 10
    while len(got) < 3:  # the ipc pipe may hand them over in more than one batch
        assert time.monotonic() < deadline
        got_now = drain(rx, got.append, 3 - len(got))
        assert got_now <= 3
        if not got_now:
            time.sleep(0.001)
    assert got == messages[:3]
    while len(got) < 5:
        assert time.monotonic() < deadline
        if not drain(rx, got.append, 100):
            time.sleep(0.001)
    assert got == messages
    assert not readable(rx)


def test_waiting_with_limit_one_takes_exactly_one(pair: tuple[zmq.Socket, zmq.Socket]) -> None:
    tx, rx = pair
    for i in range(3):
        send_frames(tx, [b"m", bytes([i])])
    got: list[list[bytes]] = []
    deadline = time.monotonic() + 10
    while len(got) < 3:
        assert time.monotonic() < deadline
        if readable(rx):
            assert drain(rx, got.append, 1, waiting=True) == 1
        else:
            time.sleep(0.001)
    assert got == [[b"m", bytes([i])] for i in range(3)]


@pytest.mark.parametrize("burst", [1, 50])
def test_the_descriptor_signals_the_next_message_after_a_drain(pair: tuple[zmq.Socket, zmq.Socket], burst: int) -> None:
    """What the service worker and AsyncRPCClient rely on: after drain returns (on a ZMQ_EVENTS check for
    a lone message, on zmq.Again after a burst) the socket's descriptor wakes a selector for the next one."""
    tx, rx = pair
    for i in range(burst):
        send_frames(tx, [b"x", str(i).encode()])
    wait_readable(rx)
    got: list[list[bytes]] = []
    deadline = time.monotonic() + 10
    while len(got) < burst:
        assert time.monotonic() < deadline
        drain(rx, got.append, 1000)
    assert len(got) == burst  # (no readable() here: it would re-arm the descriptor itself)
    send_frames(tx, [b"next"])
    fd = rx.getsockopt(zmq.FD)
    while True:  # the descriptor is edge-like: wake on it, then ask libzmq whether a message is in
        r, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        assert r, "the descriptor never signalled the next message"
        if drain(rx, got.append, 10):
            break
    assert got[-1] == [b"next"]


def test_one_drain_takes_every_waiting_message_up_to_the_limit() -> None:
    """inproc hands every sent message to the receiver's pipe at once, so what waits is known exactly."""
    ctx = zmq.Context()
    rx, tx = ctx.socket(zmq.DEALER), ctx.socket(zmq.DEALER)
    try:
        rx.bind("inproc://fastio-burst")
        tx.connect("inproc://fastio-burst")
        for i in range(50):
            send_frames(tx, [b"m", str(i).encode()])
        got: list[list[bytes]] = []
        assert [drain(rx, got.append, 20), drain(rx, got.append, 20), drain(rx, got.append, 20)] == [20, 20, 10]
        assert got == [[b"m", str(i).encode()] for i in range(50)]
        assert drain(rx, got.append, 20) == 0
    finally:
        rx.close(0)
        tx.close(0)
        ctx.term()
