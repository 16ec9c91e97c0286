"""Middleware lifecycle: stale ipc files, a second instance, ports in use, CURVE, signals."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from aitrados.bus import RPCClient, RPCTimeoutError
from aitrados.bus.addresses import AlreadyRunningError, ipc_path
from aitrados.bus.binding import BindError
from aitrados.bus.security import SecurityError, make_keys
from aitrados.middleware import Middleware
from aitrados.settings import BusSettings

from conftest import AITRADOS, bus_settings, clean_environ, cli_env

pytestmark = pytest.mark.timeout(60)


def test_stale_ipc_file_is_removed(ipc_dir: str) -> None:
    s = bus_settings(ipc_dir)
    path = ipc_path(s.bus, "rpc_frontend")
    crashed = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    crashed.bind(str(path))  # a socket file whose owner is gone, as after a crash
    crashed.close()
    assert path.exists()
    with Middleware(s) as mw:
        assert mw.rpc_client(transport="ipc", timeout=3).call("middleware", "ping")["pong"]
    assert not path.exists(), "ipc files must be removed at stop"


def test_second_middleware_at_same_ipc_is_refused(ipc_dir: str) -> None:
    s = bus_settings(ipc_dir)
    with Middleware(s):
        with pytest.raises(AlreadyRunningError, match="a middleware is already running at ipc://"):
            Middleware(bus_settings(ipc_dir, name=s.bus.name)).start()


def test_port_in_use_names_port_and_setting(ipc_dir: str) -> None:
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    try:
        with pytest.raises(BindError) as ei:
            Middleware(bus_settings(ipc_dir, rpc_backend_port=port)).start()
        assert str(port) in str(ei.value) and "AITRADOS_BUS__RPC_BACKEND_PORT" in str(ei.value)
        # nothing half-started is left behind: the same name starts cleanly afterwards
        assert not any(Path(ipc_dir).glob("*.sock"))
    finally:
        blocker.close()


def test_refuses_non_loopback_without_curve(ipc_dir: str) -> None:
    with pytest.raises(SecurityError, match="aitrados keygen"):
        Middleware(bus_settings(ipc_dir, host="0.0.0.0")).start()


def test_curve_keys_required_when_enabled(ipc_dir: str, tmp_path: Path) -> None:
    keys = make_keys(tmp_path / "keys")
    s = bus_settings(ipc_dir, curve_secret_key_file=str(keys["server_secret"]))
    with Middleware(s) as mw:
        ep = mw.endpoints("tcp")
        client_bus = BusSettings(curve_public_key_file=str(keys["server_public"]),
                                 curve_client_secret_key_file=str(keys["client_secret"]))
        with RPCClient(ep.rpc_frontend, bus=client_bus, timeout=5) as good:
            assert good.call("middleware", "ping")["pong"] is True
        with RPCClient(ep.rpc_frontend, timeout=0.5) as plain:
            with pytest.raises(RPCTimeoutError):
                plain.call("middleware", "ping")
        # in-process (inproc) peers are trusted and need no keys
        assert mw.rpc_client(timeout=3).call("middleware", "ping")["pong"] is True


def test_curve_accepts_only_allowed_client_keys_by_default(ipc_dir: str, tmp_path: Path) -> None:
    keys = make_keys(tmp_path / "keys")
    stranger = make_keys(tmp_path / "stranger")  # knows the server key, but its key is not allowed
    s = bus_settings(ipc_dir, curve_secret_key_file=str(keys["server_secret"]))
    with Middleware(s) as mw:
        ep = mw.endpoints("tcp")
        allowed = BusSettings(curve_public_key_file=str(keys["server_public"]),
                              curve_client_secret_key_file=str(keys["client_secret"]))
        other = BusSettings(curve_public_key_file=str(keys["server_public"]),
                            curve_client_secret_key_file=str(stranger["client_secret"]))
        with RPCClient(ep.rpc_frontend, bus=allowed, timeout=5) as good:
            assert good.call("middleware", "ping")["pong"] is True
        with RPCClient(ep.rpc_frontend, bus=other, timeout=0.5) as bad:
            with pytest.raises(RPCTimeoutError):
                bad.call("middleware", "ping")
    # the opt-out accepts any key that knows the server's
    with Middleware(bus_settings(ipc_dir, curve_secret_key_file=str(keys["server_secret"]),
                                 curve_allow_any_client=True)) as mw:
        with RPCClient(mw.endpoints("tcp").rpc_frontend, bus=other, timeout=5) as c:
            assert c.call("middleware", "ping")["pong"] is True


def test_curve_without_allow_list_refuses_to_start(ipc_dir: str, tmp_path: Path) -> None:
    keys = make_keys(tmp_path / "keys")
    for f in keys["authorized_dir"].iterdir():
        f.unlink()
    with pytest.raises(SecurityError, match="ALLOW_ANY_CLIENT"):
        Middleware(bus_settings(ipc_dir, curve_secret_key_file=str(keys["server_secret"]))).start()


@pytest.mark.timeout(150)
def test_cli_run_stops_cleanly_on_sigterm(ipc_dir: str) -> None:
    s = bus_settings(ipc_dir)
    env = cli_env(s)
    p = subprocess.Popen([*AITRADOS, "run"], env=env, stderr=subprocess.PIPE, text=True)
    lines = []
    assert p.stderr is not None
    while not any("Backend addr" in ln for ln in lines):
        line = p.stderr.readline()
        assert line, f"middleware exited early: {lines}"
        lines.append(line)
    text = "".join(lines)
    for needle in ("Pubsub Router Started", "Sub addr:[", "Pub addr:[", "RPC Router Started", "Frontend addr:["):
        assert needle in text
    assert any(Path(ipc_dir).glob("*.sock"))
    p.send_signal(signal.SIGTERM)
    # the signal may come while `run` is still starting its other parts (slow on a loaded
    # machine): a generous bound, and stderr drained meanwhile so the child never blocks on it
    _, rest = p.communicate(timeout=90)
    assert p.returncode == 0, text + rest
    assert not any(Path(ipc_dir).glob("*.sock"))


def test_cli_run_port_in_use_exits_nonzero(ipc_dir: str) -> None:
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    env = clean_environ(AITRADOS_BUS__IPC_DIR=ipc_dir, AITRADOS_BUS__RPC_FRONTEND_PORT=str(port),
                        AITRADOS_BUS__RPC_BACKEND_PORT="0", AITRADOS_BUS__SUB_PORT="0", AITRADOS_BUS__PUB_PORT="0")
    try:
        r = subprocess.run([*AITRADOS, "run"], env=env, capture_output=True, text=True, timeout=30)
    finally:
        blocker.close()
    assert r.returncode != 0
    assert f"tcp port {port}" in r.stderr and "AITRADOS_BUS__RPC_FRONTEND_PORT" in r.stderr


def test_stop_wakes_the_idle_pubsub_monitor(ipc_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """stop() does not wait for the monitor's idle poll to time out: with that poll made ten minutes
    long, the router's threads are still all gone when stop() returns (each join is bounded)."""
    from aitrados.bus.pubsub import PubSubRouter

    monkeypatch.setattr(PubSubRouter, "MONITOR_IDLE_POLL_MS", 600_000)
    mw = Middleware(bus_settings(ipc_dir)).start()
    try:
        router = mw.pubsub
        threads = list(router._threads)
        assert threads and all(t.is_alive() for t in threads)
        router.stop(timeout=30)
        assert not any(t.is_alive() for t in threads), "the monitor slept through stop()"
    finally:
        mw.stop()
