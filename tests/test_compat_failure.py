"""A compat gateway that cannot run stops the whole run with its cause and a non-zero exit, instead
of the middleware serving on without it: its failure is watched like the routers' threads."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator

import pytest

pytest.importorskip("aitrados_api")

from aitrados.runtime import Runtime

from compat_peers import compat_runtime_settings, free_ports
from conftest import AITRADOS, cli_env

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A tcp port on 127.0.0.1 held by a listening socket (as another program would hold it)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    yield s.getsockname()[1]
    s.close()


def test_a_gateway_port_in_use_stops_the_runtime_with_the_cause(busy_port: int) -> None:
    d = tempfile.mkdtemp(prefix="atf-", dir="/tmp")
    try:
        s, cfg = compat_runtime_settings(d, ["CRYPTO:GLOBAL:BTCUSD"])
        s.plugins["aitrados_compat"] = {**cfg, "frontend_port": busy_port}
        rt = Runtime(s, plugins=["aitrados_compat"], start_clock=False).start()
        try:
            failure = rt.mw.failure
            assert failure is not None and f"127.0.0.1:{busy_port}" in str(failure) and "cannot bind" in str(failure)
            # the rest of the middleware is up and answering: only the gateway failed, and it says so
            assert rt.mw.rpc_client(timeout=10).call("chart", "list") == []
        finally:
            code = rt.wait()
        assert code == 1 and rt.failure is failure
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_aitrados_run_exits_non_zero_naming_the_busy_port(busy_port: int, settings, ipc_dir: str) -> None:
    _, back, sub, pub = free_ports(4)
    env = cli_env(settings, AITRADOS_PLUGINS__AITRADOS_COMPAT__FRONTEND_PORT=str(busy_port),
                  AITRADOS_PLUGINS__AITRADOS_COMPAT__BACKEND_PORT=str(back),
                  AITRADOS_PLUGINS__AITRADOS_COMPAT__SUB_PORT=str(sub),
                  AITRADOS_PLUGINS__AITRADOS_COMPAT__PUB_PORT=str(pub),
                  AITRADOS_PLUGINS__AITRADOS_COMPAT__ENABLE_IPC="false",
                  AITRADOS_MARKETDATA__REPLAY_DAYS="0.1", AITRADOS_MARKETDATA__REPLAY_HISTORY_DAYS="0.1",
                  AITRADOS_TRADING__REPORT_DIR=f"{ipc_dir}/report")
    r = subprocess.run([*AITRADOS, "run", "--serve", "--plugins", "aitrados_compat"], env=env, capture_output=True,
                       text=True, timeout=100)
    assert r.returncode == 1, (r.returncode, r.stderr[-3000:])
    assert f"compat gateway cannot bind tcp://127.0.0.1:{busy_port}" in r.stderr, r.stderr[-3000:]
    assert "stopping after a failure" in r.stderr
