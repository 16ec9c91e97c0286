"""The C extension ``aitrados.bus._fastzmq`` (core/bus/_fastzmq.c) against pyzmq's semantics.

The extension must be built: ``pip install -e .`` compiles it with gcc, and CI always has gcc, so a
missing build fails here (it is optional only for installs without a compiler, where fastio falls
back to its pure-Python versions). These tests import the extension directly, so they run whatever
``AITRADOS_PURE_PYTHON`` says; where a test takes ``io`` it runs on both implementations, which
must behave the same. Scenarios whose failure is a crash, a hang with the GIL held or a
process-wide limit run in a child process (tests/native_child.py).
"""

from __future__ import annotations

import gc
import random
import signal
import subprocess
import textwrap
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import zmq

from aitrados.bus import fastio

from conftest import PYTHON, clean_environ
from native_child import impl, signal_when_blocked

CHILD = str(Path(__file__).with_name("native_child.py"))
pytestmark = pytest.mark.timeout(120)


def native_module() -> SimpleNamespace:
    """The extension's functions; fails the test (not skips) when the build is missing."""
    try:
        return impl("native")
    except ImportError as exc:
        pytest.fail(f"the C extension aitrados.bus._fastzmq is not built or cannot find libzmq ({exc}); "
                    "`pip install -e .` builds it with gcc (CI always has gcc)")


@pytest.fixture(params=["native", "python"])
def io(request: pytest.FixtureRequest) -> SimpleNamespace:
    """The implementation under test: the C extension's or fastio's pure-Python one."""
    return native_module() if request.param == "native" else impl("python")


@pytest.fixture
def ctx() -> Iterator[zmq.Context]:
    """A private context, terminated after the test (every socket is closed with linger 0)."""
    c = zmq.Context()
    yield c
    c.destroy(linger=0)


def dealer_pair(ctx: zmq.Context, name: str) -> tuple[zmq.Socket, zmq.Socket]:
    """A connected DEALER pair over inproc: (sender, receiver)."""
    rx, tx = ctx.socket(zmq.DEALER), ctx.socket(zmq.DEALER)
    rx.linger = tx.linger = 0
    rx.bind(f"inproc://{name}")
    tx.connect(f"inproc://{name}")
    return tx, rx


def random_messages(rng: random.Random, count: int) -> list[list[bytes]]:
    """*count* multipart messages: 1-40 frames, empty frames, small ones and a few up to 1 MiB."""
    out: list[list[bytes]] = []
    for i in range(count):
        frames = []
        for _ in range(rng.choice([1, 1, 2, 3, 5, 40])):
            size = rng.choice([0, 0, 1, 7, 33, 200, 4096])
            frames.append(rng.randbytes(size))
        if i % 10 == 0:
            frames.append(rng.randbytes(rng.randint(64 << 10, 1 << 20)))
        out.append(frames)
    return out


def recv_all(io: SimpleNamespace, sock: zmq.Socket, count: int, keep: int = -1) -> list[list[bytes]]:
    """*count* messages through io.recv_messages (batches of at most 7), bounded in time."""
    got: list[list[bytes]] = []
    deadline = time.monotonic() + 30
    while len(got) < count:
        assert time.monotonic() < deadline, f"{len(got)} of {count} messages arrived"
        batch = io.recv_messages(sock, min(7, count - len(got)), keep)
        assert len(batch) <= 7
        got.extend(batch)
        if not batch:
            sock.poll(100)
    return got


# ------------------------------------------------------------------ the build
def test_extension_is_built_and_finds_pyzmqs_libzmq() -> None:
    from aitrados.bus import _fastzmq  # type: ignore[attr-defined]

    native_module()
    assert _fastzmq.init() == zmq.zmq_version_info()


@pytest.mark.parametrize("given", ["pyzmq", "nonexistent"])
def test_init_finds_libzmq_through_pyzmqs_backend_or_else_by_name(given: str) -> None:
    """Given pyzmq's backend module, the functions are looked up through it (the libzmq it was linked
    with, even if another one is loaded); given a path that is not loaded, the first libzmq loaded."""
    code = textwrap.dedent(f"""
        import zmq
        from zmq.backend.cython import _zmq
        from aitrados.bus import _fastzmq
        path = _zmq.__file__ if {given!r} == "pyzmq" else "/nonexistent/libzmq.so"
        assert _fastzmq.init(path) == zmq.zmq_version_info()
        print(_fastzmq.library == path, "libzmq" in _fastzmq.library)
        ctx = zmq.Context()
        a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
        a.bind("inproc://init"); b.connect("inproc://init")
        _fastzmq.send_frames(a, [b"x", b"y"])
        print(_fastzmq.recv_frames(b) == [b"x", b"y"])
    """)
    r = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, timeout=60,
                       env=clean_environ())
    assert r.returncode == 0, r.stderr
    through_pyzmq, by_name, round_trip = r.stdout.split()
    assert round_trip == "True"
    assert (through_pyzmq, by_name) == (("True", "False") if given == "pyzmq" else ("False", "True"))


def test_fastio_uses_the_extension_unless_told_not_to() -> None:
    code = "from aitrados.bus import fastio; print(fastio.NATIVE, fastio.send_frames is fastio.py_send_frames)"
    for env, expected in ((clean_environ(), "True False"), (clean_environ(AITRADOS_PURE_PYTHON="1"), "False True"),
                          (clean_environ(AITRADOS_PURE_PYTHON="0"), "True False")):
        out = subprocess.run([PYTHON, "-c", code], env=env, capture_output=True, text=True, timeout=60)
        assert out.stdout.strip() == expected, out.stderr


# ------------------------------------------------------------------ same results
def test_native_and_python_agree_on_random_traffic(ctx: zmq.Context) -> None:
    native, py = native_module(), impl("python")
    messages = random_messages(random.Random(20261203), 120)
    for send, recv, name in ((native, py, "n2p"), (py, native, "p2n"), (native, native, "n2n")):
        tx, rx = dealer_pair(ctx, name)
        for m in messages:
            send.send_frames(tx, m)
        got = [recv.recv_frames(rx) for _ in messages[:60]] + recv_all(recv, rx, 60)
        assert got == messages, name
        assert not recv.readable(rx)
        tx.close()
        rx.close()


def test_accepted_frame_types_send_the_same_bytes(ctx: zmq.Context, io: SimpleNamespace) -> None:
    tx, rx = dealer_pair(ctx, "types")
    frame = zmq.Frame(b"frame")
    io.send_frames(tx, (b"a", bytearray(b"bc"), memoryview(b"xdefx")[1:4], frame, b""))
    io.send_frames(tx, [memoryview(bytes(range(256)) * 4096)])  # 1 MiB through the buffer path
    assert io.recv_frames(rx) == [b"a", b"bc", b"def", b"frame", b""]
    assert io.recv_frames(rx) == [bytes(range(256)) * 4096]


@pytest.mark.parametrize("keep", [-1, 0, 1, 2, 5])
def test_keep_blanks_the_frames_after_the_first_keep(ctx: zmq.Context, io: SimpleNamespace, keep: int) -> None:
    tx, rx = dealer_pair(ctx, "keep")
    messages = [[b"1"], [b"1", b"2"], [b"1", b"2", b"3"], [b"1", b"", b"3", b"4", b"5", b"6", b"7"]]
    for m in messages:
        tx.send_multipart(m)
    expected = [m if keep < 0 else m[:keep] + [b""] * max(0, len(m) - keep) for m in messages]
    assert recv_all(io, rx, len(messages), keep) == expected


def test_recv_messages_with_no_limit_or_nothing_waiting(ctx: zmq.Context, io: SimpleNamespace) -> None:
    tx, rx = dealer_pair(ctx, "limit")
    assert io.recv_messages(rx, 10) == []
    tx.send(b"x")
    assert rx.poll(10_000)
    assert io.recv_messages(rx, 0) == [] and io.recv_messages(rx, -3) == []
    assert io.recv_messages(rx, 10) == [[b"x"]]


def test_max_bytes_stops_a_batch_once_it_holds_that_many_bytes(ctx: zmq.Context, io: SimpleNamespace) -> None:
    """A flood of large messages is copied out a bounded amount at a time; the rest stays queued,
    whole and in order."""
    tx, rx = dealer_pair(ctx, "max-bytes")
    for i in range(10):
        tx.send_multipart([b"h%d" % i, b"x" * 1000])
    assert rx.poll(10_000)
    first = io.recv_messages(rx, 100, -1, 2500)  # 1002 + 1002 < 2500, 3006 >= 2500: three messages
    assert first == [[b"h%d" % i, b"x" * 1000] for i in range(3)]
    assert io.recv_messages(rx, 100, 1, 10) == [[b"h3", b""], [b"h4", b""], [b"h5", b""], [b"h6", b""], [b"h7", b""]]
    assert io.recv_messages(rx, 100, -1, 0) == []  # a bound of 0 takes nothing
    assert io.recv_messages(rx, 100) == [[b"h%d" % i, b"x" * 1000] for i in range(8, 10)]


# ------------------------------------------------------------------ errors as pyzmq raises them
def test_again_without_a_message_or_peer(ctx: zmq.Context, io: SimpleNamespace) -> None:
    tx, rx = dealer_pair(ctx, "again")
    with pytest.raises(zmq.Again):
        io.recv_frames(rx, zmq.NOBLOCK)
    rx.rcvtimeo = 50
    with pytest.raises(zmq.Again):
        io.recv_frames(rx)  # blocking, until RCVTIMEO expires
    lone = ctx.socket(zmq.DEALER)  # no peer: a send cannot be queued
    lone.linger = 0
    with pytest.raises(zmq.Again):
        io.send_frames(lone, [b"a", b"b"], zmq.NOBLOCK)
    lone.sndtimeo = 50
    with pytest.raises(zmq.Again):
        io.send_frames(lone, [b"a", b"b"])  # blocking, until SNDTIMEO expires
    lone.close()
    io.send_frames(tx, [b"still", b"works"])
    rx.rcvtimeo = 10_000
    assert io.recv_frames(rx) == [b"still", b"works"]


def test_router_mandatory_unknown_peer_is_ehostunreach_and_sends_nothing(ctx: zmq.Context, io: SimpleNamespace) -> None:
    router, dealer = ctx.socket(zmq.ROUTER), ctx.socket(zmq.DEALER)
    router.linger = dealer.linger = 0
    router.router_mandatory = 1
    router.bind("inproc://mandatory")
    dealer.identity = b"known"
    dealer.connect("inproc://mandatory")
    dealer.send(b"hello")
    assert router.recv_multipart() == [b"known", b"hello"]
    with pytest.raises(zmq.ZMQError) as ei:
        io.send_frames(router, [b"nobody", b"body", b"more"])
    assert ei.value.errno == zmq.EHOSTUNREACH and type(ei.value) is zmq.ZMQError
    io.send_frames(router, [b"known", b"after"])
    dealer.rcvtimeo = 10_000
    assert dealer.recv_multipart() == [b"after"]


def test_a_closed_socket_is_enotsock(ctx: zmq.Context, io: SimpleNamespace) -> None:
    tx, rx = dealer_pair(ctx, "closed")
    rx.close()
    for call in (lambda: io.recv_frames(rx, zmq.NOBLOCK), lambda: io.recv_messages(rx, 5),
                 lambda: io.send_frames(rx, [b"x"]), lambda: io.readable(rx)):
        with pytest.raises(zmq.ZMQError) as ei:
            call()
        assert ei.value.errno == zmq.ENOTSOCK


def test_context_terminated_ends_a_blocking_receive_in_another_thread(io: SimpleNamespace) -> None:
    c = zmq.Context()
    rx = c.socket(zmq.DEALER)
    rx.linger = 0
    rx.bind("inproc://term")
    raised: list[BaseException] = []

    def receive() -> None:
        try:
            io.recv_frames(rx)  # no timeout: only the context's end stops it
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            raised.append(exc)
        rx.close()

    t = threading.Thread(target=receive, daemon=True)
    t.start()
    c.term()  # returns once the receiver closed its socket
    t.join(20)
    assert len(raised) == 1 and isinstance(raised[0], zmq.ContextTerminated)


@pytest.mark.parametrize("bad", ["text", 7, memoryview(b"abcdef")[::2]], ids=["str", "int", "strided"])
def test_a_bad_frame_sends_nothing(ctx: zmq.Context, io: SimpleNamespace, bad: object) -> None:
    tx, rx = dealer_pair(ctx, "bad")
    with pytest.raises((TypeError, BufferError)):
        io.send_frames(tx, [b"first", b"second", bad, b"last"])
    io.send_frames(tx, [b"next"])  # would complete the first message if its first frames went
    rx.rcvtimeo = 10_000
    assert io.recv_frames(rx) == [b"next"]
    assert not io.readable(rx)


def test_no_frames_and_not_a_sequence(ctx: zmq.Context) -> None:
    native = native_module()
    tx, _ = dealer_pair(ctx, "args")
    with pytest.raises(ValueError):
        native.send_frames(tx, [])
    with pytest.raises(TypeError):
        native.send_frames(tx, None)
    with pytest.raises(TypeError):
        native.send_frames(tx, b"abc")  # a bytes is a sequence of ints, not of frames


# ------------------------------------------------------------------ signals, threads, the GIL
class Interrupted(Exception):
    """What the test's signal handler raises."""


def test_a_signal_handlers_exception_leaves_a_blocking_receive_and_the_socket_works(
        ctx: zmq.Context, io: SimpleNamespace) -> None:
    tx, rx = dealer_pair(ctx, "signal")
    calls: list[int] = []

    def handler(signum: int, frame: object) -> None:
        calls.append(signum)
        if len(calls) == 1:
            raise Interrupted

    old = signal.signal(signal.SIGUSR1, handler)
    try:
        helper = signal_when_blocked(threading.main_thread(), signal.SIGUSR1, lambda: bool(calls))
        with pytest.raises(Interrupted):
            io.recv_frames(rx)  # no timeout: only the handler's exception ends it
        helper.join(25)
        # A handler that returns: the receive goes on waiting (EINTR retried) and gets the message.
        helper = signal_when_blocked(threading.main_thread(), signal.SIGUSR1, lambda: len(calls) > 1)
        sender = threading.Thread(target=lambda: (helper.join(25), tx.send_multipart([b"after", b""])), daemon=True)
        sender.start()
        assert io.recv_frames(rx) == [b"after", b""]
        sender.join(25)
        assert len(calls) == 2
    finally:
        signal.signal(signal.SIGUSR1, old)


def test_a_signal_handlers_exception_leaves_a_blocking_send_and_sends_nothing(
        ctx: zmq.Context, io: SimpleNamespace) -> None:
    tx = ctx.socket(zmq.DEALER)
    tx.linger = 0
    calls: list[int] = []

    def handler(signum: int, frame: object) -> None:
        calls.append(signum)
        raise Interrupted

    old = signal.signal(signal.SIGUSR1, handler)
    try:
        helper = signal_when_blocked(threading.main_thread(), signal.SIGUSR1, lambda: bool(calls))
        with pytest.raises(Interrupted):
            io.send_frames(tx, [b"never", b"sent"])  # no peer, no timeout
        helper.join(25)
    finally:
        signal.signal(signal.SIGUSR1, old)
    rx = ctx.socket(zmq.DEALER)
    rx.linger = 0
    rx.rcvtimeo = 10_000
    rx.bind("inproc://signal-send")
    tx.connect("inproc://signal-send")
    io.send_frames(tx, [b"only", b"this"])
    assert io.recv_frames(rx) == [b"only", b"this"]
    assert not io.readable(rx)


def run_child(scenario: str, implementation: str) -> None:
    """Run a tests/native_child.py scenario in a child process; it must print ok and exit 0."""
    try:
        out = subprocess.run([PYTHON, CHILD, scenario, implementation], env=clean_environ(),
                             capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{scenario} ({implementation}) hung")
    assert out.returncode == 0 and out.stdout.strip() == "ok", \
        f"exit {out.returncode}\n{out.stdout}\n{out.stderr[-3000:]}"


@pytest.mark.parametrize("implementation", ["native", "python"])
def test_a_blocking_receive_releases_the_gil(implementation: str) -> None:
    native_module()
    run_child("gil_released", implementation)


@pytest.mark.parametrize("implementation", ["native", "python"])
def test_a_frame_dropped_by_a_signal_handler_during_a_send_is_still_sent(implementation: str) -> None:
    native_module()
    run_child("list_mutated_during_send", implementation)


@pytest.mark.parametrize("implementation", ["native", "python"])
def test_a_memory_error_mid_message_drops_the_rest_of_it(implementation: str) -> None:
    native_module()
    run_child("memory_error_mid_message", implementation)


def test_track_holds_what_it_uses_while_decode_runs_python() -> None:
    native_module()
    run_child("track_with_a_decode_that_changes_its_inputs", "native")


# ------------------------------------------------------------------ leaks
def rss() -> int:
    """This process's resident set size in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def traced_growth(rounds: Callable[[int], None], settle: int, measured: int) -> int:
    """Bytes Python's traced memory grew over ``rounds(measured)``, after ``rounds(settle)`` under tracing."""
    gc.collect()
    tracemalloc.start()
    try:
        rounds(settle)
        gc.collect()
        before, _ = tracemalloc.get_traced_memory()
        rounds(measured)
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return after - before


def test_no_leak_over_100k_round_trips(ctx: zmq.Context) -> None:
    """100,000 send/receive round trips of 1 KiB frames (and the error and keep paths) grow neither
    Python's traced memory nor the RSS beyond a generous margin: a leaked message or list per
    round trip would be over 100 MB."""
    native = native_module()
    tx, rx = dealer_pair(ctx, "leak")
    body = bytes(1024)
    frames = [b"id", body, bytearray(body)]

    def rounds(n: int) -> None:
        for i in range(n):
            native.send_frames(tx, frames)
            if i % 2:
                assert native.recv_frames(rx) == [b"id", body, body]
            else:
                assert native.recv_messages(rx, 4, 1) == [[b"id", b"", b""]]
            try:
                native.recv_frames(rx, zmq.NOBLOCK)
            except zmq.Again:
                pass

    rounds(10_000)  # warm up: pools, the pipe's chunks
    gc.collect()
    before = rss()
    grew = traced_growth(rounds, 10_000, 20_000)
    rounds(70_000)
    gc.collect()
    assert grew < 1 << 20, f"Python memory grew {grew} bytes"
    assert rss() - before < 32 << 20, f"RSS grew {(rss() - before) >> 20} MiB"


# ------------------------------------------------------------------ the whole bus, either way
@pytest.mark.parametrize("pure", [True, False], ids=["pure-python", "native"])
def test_middleware_rpc_and_pubsub_in_a_child_process(pure: bool) -> None:
    """A child process starts a Middleware and makes an RPC call and a pub/sub round trip; with
    ``AITRADOS_PURE_PYTHON=1`` it runs on fastio's pure-Python path (``fastio.NATIVE`` is False
    there), without it on the extension."""
    native_module()
    env = clean_environ(AITRADOS_PURE_PYTHON="1") if pure else clean_environ()
    out = subprocess.run([PYTHON, CHILD, "middleware", "python" if pure else "native"], env=env,
                         capture_output=True, text=True, timeout=90)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), \
        f"exit {out.returncode}\n{out.stdout}\n{out.stderr[-3000:]}"
