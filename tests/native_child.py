"""Helpers for tests/test_bus_native.py, and the scenarios it runs in a child process.

A scenario runs in its own process when its failure mode is a crash (a use-after-free), a hang
with the GIL held, or a process-wide setting (an address-space limit, ``AITRADOS_PURE_PYTHON``).
``python native_child.py SCENARIO IMPL`` prints ``ok`` and exits 0 when the scenario passed; IMPL
is ``native`` (the C extension) or ``python`` (fastio's pure-Python versions).
"""

from __future__ import annotations

import os
import platform
import resource
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import SimpleNamespace

import zmq

#: Linux syscall numbers of the waits libzmq blocks in (poll-based signaler): poll and ppoll.
_POLL_SYSCALLS = {"x86_64": {"7", "271"}, "aarch64": {"73"}}.get(platform.machine(), set())


def impl(name: str) -> SimpleNamespace:
    """The functions under test: ``native`` (the extension itself, whatever ``AITRADOS_PURE_PYTHON``
    says) or ``python`` (fastio's pure-Python versions)."""
    from aitrados.bus import fastio

    if name == "python":
        return SimpleNamespace(send_frames=fastio.py_send_frames, recv_frames=fastio.py_recv_frames,
                               recv_messages=fastio.py_recv_messages, readable=fastio.py_readable)
    from aitrados.bus import _fastzmq  # type: ignore[attr-defined]

    _fastzmq.init()
    return SimpleNamespace(send_frames=_fastzmq.send_frames, recv_frames=_fastzmq.recv_frames,
                           recv_messages=_fastzmq.recv_messages, readable=_fastzmq.readable)


def blocked_in_poll(native_id: int) -> bool:
    """True when thread *native_id* of this process sits in poll/ppoll (where a blocking libzmq call
    waits), read from /proc; False while it runs, waits for the GIL (futex) or sleeps otherwise."""
    try:
        with open(f"/proc/self/task/{native_id}/syscall") as f:
            return f.read().split(" ", 1)[0] in _POLL_SYSCALLS
    except OSError:
        return False


def signal_when_blocked(target: threading.Thread, signum: int, done: Callable[[], bool],
                        timeout: float = 20.0) -> threading.Thread:
    """Start a thread that sends *signum* to *target* each time it finds it blocked in poll, until
    *done()* (the handler ran) or *timeout*; a signal that lands just outside the wait is lost, so it
    is sent again. Returns the started thread."""
    assert _POLL_SYSCALLS, f"no poll syscall numbers known for {platform.machine()}"
    assert target.native_id is not None and target.ident is not None

    def run() -> None:
        deadline = time.monotonic() + timeout
        while not done() and time.monotonic() < deadline:
            if blocked_in_poll(target.native_id):  # type: ignore[arg-type]
                signal.pthread_kill(target.ident, signum)  # type: ignore[arg-type]
            time.sleep(0.005)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


# ------------------------------------------------------------------ scenarios (child processes)
def scenario_list_mutated_during_send(io: SimpleNamespace) -> None:
    """A signal handler replaces the frame a blocked send_frames is sending (dropping the only
    reference to it) and connects the peer the send waits for: the message sent must still be the
    frames as passed (pyzmq holds a reference to each frame while it sends it)."""
    ctx = zmq.Context()
    rx, tx = ctx.socket(zmq.DEALER), ctx.socket(zmq.DEALER)
    rx.linger = tx.linger = 0
    rx.rcvtimeo = 20_000
    rx.bind("inproc://mutated")
    n = 1 << 20
    frames = [b"A" * n, b"tail"]
    handled = threading.Event()

    def handler(signum: int, frame: object) -> None:
        if handled.is_set():
            return
        frames[0] = b"B" * n  # the original frame's last reference goes: it is freed now
        junk = [bytes(n) for _ in range(8)]  # and its memory reused if it was not unmapped
        del junk
        tx.connect("inproc://mutated")  # the blocked send can go on its retry
        handled.set()

    signal.signal(signal.SIGUSR1, handler)
    helper = signal_when_blocked(threading.main_thread(), signal.SIGUSR1, handled.is_set)
    io.send_frames(tx, frames)  # no peer yet: blocks until the handler connected one
    helper.join(25)
    assert handled.is_set(), "the send never blocked in poll"
    got = rx.recv_multipart()
    assert got == [b"A" * n, b"tail"], f"sent {got[0][:8]!r}... ({len(got[0])} bytes), not the frame passed"
    rx.close()
    tx.close()
    ctx.term()


def scenario_gil_released(io: SimpleNamespace) -> None:
    """While one thread blocks in recv_frames (no timeout), this thread runs Python code: it sees the
    other in poll, counts to 100,000, then sends the message that ends the wait. With the GIL held
    during the wait this thread never runs and the parent's timeout fails the test."""
    ctx = zmq.Context()
    rx, tx = ctx.socket(zmq.DEALER), ctx.socket(zmq.DEALER)
    rx.linger = tx.linger = 0
    rx.bind("inproc://gil")
    tx.connect("inproc://gil")
    got: list[list[bytes]] = []
    t = threading.Thread(target=lambda: got.append(io.recv_frames(rx)), daemon=True)
    t.start()
    deadline = time.monotonic() + 20
    while not blocked_in_poll(t.native_id):  # type: ignore[arg-type]
        assert time.monotonic() < deadline, "the receiving thread never blocked in poll"
        time.sleep(0.001)
    count = 0
    while count < 100_000:  # Python bytecode, which needs the GIL, while the other thread waits
        count += 1
    assert t.is_alive() and not got
    tx.send_multipart([b"wake", b"up"])
    t.join(20)
    assert got == [[b"wake", b"up"]]
    rx.close()
    tx.close()
    ctx.term()


def scenario_memory_error_mid_message(io: SimpleNamespace) -> None:
    """A receive that fails with MemoryError on a message's second frame (an address-space limit
    below the frame's size) drops the rest of that message: the next receive gets the next whole
    message, not the failed one's tail frames."""
    ctx = zmq.Context()
    rx, tx = ctx.socket(zmq.DEALER), ctx.socket(zmq.DEALER)
    rx.linger = tx.linger = 0
    rx.bind("inproc://mem")
    tx.connect("inproc://mem")
    big = 256 << 20
    tx.send_multipart([b"head", b"x" * big, b"tail1", b"tail2"])
    tx.send_multipart([b"next", b"message"])
    deadline = time.monotonic() + 20
    while not rx.poll(100):  # both messages are in the inproc pipe once the first is readable
        assert time.monotonic() < deadline
    with open("/proc/self/status") as f:
        vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (vm + (64 << 20), hard))  # room for small objects, not 256 MiB
    try:
        try:
            io.recv_frames(rx, zmq.NOBLOCK)
        except MemoryError:
            pass
        else:
            raise AssertionError("a 256 MiB frame was copied under a 64 MiB allowance")
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    assert io.recv_frames(rx, zmq.NOBLOCK) == [b"next", b"message"]
    rx.close()
    tx.close()
    ctx.term()


def middleware_round_trip(expect_native: bool) -> None:
    """A Middleware in this process, an RPC call and a pub/sub round trip over ipc, with fastio's
    implementation as this process's environment chose it (``AITRADOS_PURE_PYTHON``): *expect_native*
    says which it must be."""
    import shutil
    import tempfile

    from aitrados.bus import Service, fastio
    from aitrados.middleware import Middleware

    from conftest import bus_settings

    assert fastio.NATIVE is expect_native, f"fastio.NATIVE is {fastio.NATIVE}"
    assert (fastio.recv_frames is fastio.py_recv_frames) is not expect_native

    class Echo(Service):
        """Returns what it is given."""

        name = "echo"

        def echo(self, value: object) -> object:
            return value

    ipc_dir = tempfile.mkdtemp(prefix="at-", dir="/tmp")
    mw = Middleware(bus_settings(ipc_dir)).start()
    try:
        mw.serve(Echo(), transport="ipc")
        client = mw.rpc_client(transport="ipc", timeout=5)
        deadline = time.monotonic() + 20
        while "echo" not in client.call("middleware", "services"):
            assert time.monotonic() < deadline, "the echo service never registered"
            time.sleep(0.05)
        value = {"frames": [1, 2, 3], "text": "x" * 100_000}
        assert client.call("echo", "echo", value=value) == value
        sub = mw.subscriber(["e2e."], transport="ipc")
        pub = mw.publisher(transport="ipc")
        got = None
        while got is None:  # a subscription reaches the router after a moment: publish until one arrives
            assert time.monotonic() < deadline, "no published message arrived"
            pub.publish("e2e.topic", {"n": 1})
            got = sub.recv(timeout=0.1)
        assert got.topic == "e2e.topic" and got.data == {"n": 1}
        sub.close()
        pub.close()
        client.close()
    finally:
        mw.stop()
        shutil.rmtree(ipc_dir, ignore_errors=True)


def scenario_track_with_a_decode_that_changes_its_inputs(io: SimpleNamespace) -> None:
    """``_fastzmq.track`` with a ``decode`` that empties the topics dict and the batch (Python code
    may run there: a hook, a finalizer): the message still gets its own topic, not whatever reused
    the memory of the topic the dict held. *io* is unused (track exists only in C)."""
    from aitrados.bus import _fastzmq  # type: ignore[attr-defined]

    tb, pid, seq = b"t.x", b"P" * 8, 7
    topics = {tb: "".join(["t", ".x"])}  # a str only the dict refers to
    batch = [[tb, bytes([1]) + pid + seq.to_bytes(8, "big"), b"body"]]
    reuse: list[str] = []

    def decode(body: bytes) -> bytes:
        topics.clear()
        batch.clear()
        reuse.extend("".join(["u", ".y"]) for _ in range(100))  # same size: takes the freed memory
        return body

    out: list[tuple[object, ...]] = []
    assert _fastzmq.track(batch, 0, topics, {}, decode, ValueError, lambda *a: a, out) == 1
    assert out == [("t.x", seq, pid, b"body")], out


SCENARIOS: dict[str, Callable[[SimpleNamespace], None]] = {
    "track_with_a_decode_that_changes_its_inputs": scenario_track_with_a_decode_that_changes_its_inputs,
    "list_mutated_during_send": scenario_list_mutated_during_send,
    "gil_released": scenario_gil_released,
    "memory_error_mid_message": scenario_memory_error_mid_message,
}

if __name__ == "__main__":
    if sys.argv[1] == "middleware":
        middleware_round_trip(sys.argv[2] == "native")
    else:
        SCENARIOS[sys.argv[1]](impl(sys.argv[2]))
    print("ok", flush=True)
    os._exit(0)
