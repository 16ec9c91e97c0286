"""fastio's drain and readable on real sockets: whole messages in order, the limit, and a descriptor
that still signals the next arrival after either way a drain ends (a lone message or a burst).
Every test runs on both implementations: the C extension's and the pure-Python one."""

from __future__ import annotations

import select
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
import zmq

from aitrados.bus import fastio

pytestmark = pytest.mark.timeout(30)

PY = SimpleNamespace(drain=fastio.py_drain, readable=fastio.py_readable, send_frames=fastio.py_send_frames,
                     send_many=fastio.py_send_many)
NATIVE = SimpleNamespace(drain=fastio.native_drain, readable=fastio.readable, send_frames=fastio.send_frames,
                         send_many=fastio.send_many)


@pytest.fixture(params=["native", "python"])
def io(request: pytest.FixtureRequest) -> SimpleNamespace:
    """The implementation under test (the C one needs the extension, which ``pip install`` builds)."""
    if request.param == "python":
        return PY
    if not fastio.NATIVE:
        pytest.skip("AITRADOS_PURE_PYTHON is set: the C extension is not loaded")
    return NATIVE


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
    while not fastio.py_readable(sock):
        assert time.monotonic() < deadline, "no message arrived"
        time.sleep(0.001)


def test_empty_socket_drains_nothing(pair: tuple[zmq.Socket, zmq.Socket], io: SimpleNamespace) -> None:
    _, rx = pair
    got: list[list[bytes]] = []
    assert not io.readable(rx)
    assert io.drain(rx, got.append, 10) == 0
    assert got == []


def test_messages_keep_their_frames_and_order_and_the_limit_holds(pair: tuple[zmq.Socket, zmq.Socket], io: SimpleNamespace) -> None:
    tx, rx = pair
    messages = [[b"a"], [b"b1", b"b2", b"b3", b"b4"], [b"c1", b""], [b"d"], [b"e1", b"e2"]]
    for m in messages:
        io.send_frames(tx, m)
    got: list[list[bytes]] = []
    deadline = time.monotonic() + 10
    while len(got) < 3:  # the ipc pipe may hand them over in more than one batch
        assert time.monotonic() < deadline
        got_now = io.drain(rx, got.append, 3 - len(got))
        assert got_now <= 3
        if not got_now:
            time.sleep(0.001)
    assert got == messages[:3]
    while len(got) < 5:
        assert time.monotonic() < deadline
        if not io.drain(rx, got.append, 100):
            time.sleep(0.001)
    assert got == messages
    assert not io.readable(rx)


def test_waiting_with_limit_one_takes_exactly_one(pair: tuple[zmq.Socket, zmq.Socket], io: SimpleNamespace) -> None:
    tx, rx = pair
    for i in range(3):
        io.send_frames(tx, [b"m", bytes([i])])
    got: list[list[bytes]] = []
    deadline = time.monotonic() + 10
    while len(got) < 3:
        assert time.monotonic() < deadline
        if io.readable(rx):
            assert io.drain(rx, got.append, 1, waiting=True) == 1
        else:
            time.sleep(0.001)
    assert got == [[b"m", bytes([i])] for i in range(3)]


@pytest.mark.parametrize("burst", [1, 50])
def test_the_descriptor_signals_the_next_message_after_a_drain(pair: tuple[zmq.Socket, zmq.Socket], burst: int, io: SimpleNamespace) -> None:
    """What the service worker and AsyncRPCClient rely on: after drain returns (on a ZMQ_EVENTS check for
    a lone message, on zmq.Again after a burst) the socket's descriptor wakes a selector for the next one."""
    tx, rx = pair
    for i in range(burst):
        io.send_frames(tx, [b"x", str(i).encode()])
    wait_readable(rx)
    got: list[list[bytes]] = []
    deadline = time.monotonic() + 10
    while len(got) < burst:
        assert time.monotonic() < deadline
        io.drain(rx, got.append, 1000)
    assert len(got) == burst  # (no io.readable() here: it would re-arm the descriptor itself)
    io.send_frames(tx, [b"next"])
    fd = rx.getsockopt(zmq.FD)
    while True:  # the descriptor is edge-like: wake on it, then ask libzmq whether a message is in
        r, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        assert r, "the descriptor never signalled the next message"
        if io.drain(rx, got.append, 10):
            break
    assert got[-1] == [b"next"]


def test_one_drain_takes_every_waiting_message_up_to_the_limit(io: SimpleNamespace) -> None:
    """inproc hands every sent message to the receiver's pipe at once, so what waits is known exactly."""
    ctx = zmq.Context()
    rx, tx = ctx.socket(zmq.DEALER), ctx.socket(zmq.DEALER)
    try:
        rx.bind("inproc://fastio-burst")
        tx.connect("inproc://fastio-burst")
        for i in range(50):
            io.send_frames(tx, [b"m", str(i).encode()])
        got: list[list[bytes]] = []
        assert [io.drain(rx, got.append, 20), io.drain(rx, got.append, 20), io.drain(rx, got.append, 20)] == [20, 20, 10]
        assert got == [[b"m", str(i).encode()] for i in range(50)]
        assert io.drain(rx, got.append, 20) == 0
    finally:
        rx.close(0)
        tx.close(0)
        ctx.term()


def test_a_handler_that_sends_does_not_swallow_the_signal_of_a_message_that_came_meanwhile(io: SimpleNamespace) -> None:
    """The service worker's and the client's handlers reply on the socket they drain. A send takes in
    libzmq's pending commands, so a message that arrived after the batch was received would then wait
    with no signal on the descriptor: drain must leave the socket checked after its handlers ran."""
    ctx = zmq.Context()
    rx, tx = ctx.socket(zmq.DEALER), ctx.socket(zmq.DEALER)
    try:
        rx.bind("inproc://fastio-late")
        tx.connect("inproc://fastio-late")
        io.send_frames(tx, [b"first"])
        got: list[list[bytes]] = []

        def handle(frames: list[bytes]) -> None:
            got.append(frames)
            if frames == [b"first"]:
                io.send_frames(tx, [b"late"])  # arrives while the drain is between receive and reply
                io.send_frames(rx, [b"reply"])  # the reply's send takes in the arrival's command
        assert io.drain(rx, handle, 100) >= 1
        if got[-1] != [b"late"]:  # not taken in the same drain: then the descriptor must say it is there
            r, _, _ = select.select([rx.getsockopt(zmq.FD)], [], [], 5.0)
            assert r, "the late message waits with no signal on the descriptor"
            assert io.drain(rx, got.append, 100) == 1
        assert got == [[b"first"], [b"late"]]
    finally:
        rx.close(0)
        tx.close(0)
        ctx.term()


def test_send_many_sends_whole_messages_in_order(pair: tuple[zmq.Socket, zmq.Socket], io: SimpleNamespace) -> None:
    tx, rx = pair
    batch = [(b"a", b"1"), [b"b"], (b"c", b"", b"x" * 70_000), (b"d", b"4")]
    assert io.send_many(tx, batch) == 4
    assert io.send_many(tx, []) == 0
    got = [rx.recv_multipart() for _ in range(4)]
    assert got == [list(m) for m in batch]
    assert rx.poll(100) == 0


@pytest.mark.parametrize("bad, error", [
    ([(b"a",), (b"b", "text")], TypeError),  # a str frame, in the second message
    ([(b"a",), (b"b", bytearray(b"c"))], TypeError),  # mutable: could change while sent without the GIL
    ([(b"a",), ()], ValueError),  # a message with no frames
    ([(b"a",), 7], TypeError),  # not a message at all
])
def test_send_many_checks_the_whole_batch_before_sending_anything(pair: tuple[zmq.Socket, zmq.Socket], io: SimpleNamespace,
                                                                  bad: list, error: type[Exception]) -> None:
    tx, rx = pair
    with pytest.raises(error):
        io.send_many(tx, bad)
    io.send_many(tx, [(b"after",)])  # the socket is whole: no half message was left open
    assert rx.recv_multipart() == [b"after"]
    assert rx.poll(100) == 0


def test_send_many_on_a_closed_socket_raises_zmq_error(io: SimpleNamespace) -> None:
    ctx = zmq.Context()
    s = ctx.socket(zmq.PUB)
    s.close()
    with pytest.raises(zmq.ZMQError):
        io.send_many(s, [(b"a", b"b")])
    ctx.term()
