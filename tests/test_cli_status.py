"""Scripts around a running middleware (real subprocesses): `status --wait` means ready,
`tail`/`status` without a middleware fail loudly, a closed stdout is not an error, and the
settings file is checked."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from conftest import AITRADOS
from test_cli_run import Lines, clean_env

pytestmark = pytest.mark.timeout(180)


def aitrados(*args: str, env: dict[str, str], cwd: Path, timeout: float = 60, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*AITRADOS, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, **kw)


def test_status_wait_returns_once_the_run_is_ready(tmp_path: Path, ipc_dir: str) -> None:
    env = clean_env(ipc_dir, AITRADOS_BUS__RPC_FRONTEND_PORT="0", AITRADOS_BUS__RPC_BACKEND_PORT="0",
                    AITRADOS_BUS__SUB_PORT="0", AITRADOS_BUS__PUB_PORT="0")
    p = subprocess.Popen([*AITRADOS, "run", "--plugins", "sma_cross", "--serve", "--report-dir", "rep"], env=env,
                         cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = Lines(p)
        waited = aitrados("status", "--wait", "--timeout", "120", env=env, cwd=tmp_path, timeout=150)
        assert waited.returncode == 0 and waited.stdout.strip() == "ready", waited.stderr
        assert lines.wait_for("ready:", 10)  # the run logged its one "ready" line before registering `runtime`
        # ready means ready: every service answers the first call, no retry needed
        services = aitrados("call", "middleware", "services", env=env, cwd=tmp_path)
        for svc in ("chart", "mtf", "trading", "plugins", "runtime"):
            assert f'"{svc}"' in services.stdout
        assert aitrados("call", "chart", "list", env=env, cwd=tmp_path).returncode == 0
        named = aitrados("status", "--wait", "chart", "trading", "--timeout", "30", env=env, cwd=tmp_path)
        assert named.returncode == 0
        missing = aitrados("status", "--wait", "no_such_service", "--timeout", "1", env=env, cwd=tmp_path)
        assert missing.returncode == 1 and "no_such_service" in missing.stderr
    finally:
        p.terminate()
        p.wait(30)
    assert p.returncode == 0  # --serve stopped by a signal after its replay is a clean stop


def test_status_wait_times_out_without_a_middleware(tmp_path: Path, ipc_dir: str) -> None:
    r = aitrados("status", "--wait", "--timeout", "1", env=clean_env(ipc_dir, name="nobody"), cwd=tmp_path)
    assert r.returncode == 1 and "not ready within 1s" in r.stderr


@pytest.mark.parametrize("command", [["tail", "--timeout", "1"], ["status", "--timeout", "1"]])
def test_without_a_middleware_tail_and_status_say_so(command: list[str], tmp_path: Path, ipc_dir: str) -> None:
    r = aitrados(*command, env=clean_env(ipc_dir, name="nobody"), cwd=tmp_path)
    assert r.returncode == 1 and "no middleware" in r.stderr and "Traceback" not in r.stderr


def test_a_closed_stdout_is_not_a_broken_pipe_error(tmp_path: Path, ipc_dir: str) -> None:
    env = clean_env(ipc_dir, name="pipe")
    read, write = os.pipe()
    os.close(read)  # the reader (e.g. `head`) has gone: every write to stdout fails with EPIPE
    try:
        p = subprocess.run([*AITRADOS, "config"], env=env, cwd=tmp_path, stdout=write, stderr=subprocess.PIPE,
                           text=True, timeout=60)
    finally:
        os.close(write)
    assert p.returncode == 0 and "Broken pipe" not in p.stderr and "Traceback" not in p.stderr, p.stderr


def test_unknown_toml_section_and_syntax_errors_name_the_file(tmp_path: Path, ipc_dir: str) -> None:
    env = clean_env(ipc_dir)
    (tmp_path / "aitrados.toml").write_text("[tradng]\nreport_dir = 'x'\n")
    r = aitrados("config", env=env, cwd=tmp_path)
    assert r.returncode == 2 and "aitrados.toml" in r.stderr and "tradng" in r.stderr
    (tmp_path / "aitrados.toml").write_text("[trading\n")
    r = aitrados("config", env=env, cwd=tmp_path)
    assert r.returncode == 2 and "aitrados.toml: not valid TOML" in r.stderr
    (tmp_path / "aitrados.toml").write_text("[trading]\nreport_dir = 'mine'\n")
    r = aitrados("config", "--set", "trading.broker.initial_cash=5000", env=env, cwd=tmp_path)
    assert r.returncode == 0 and '"report_dir": "mine"' in r.stdout and '"initial_cash": 5000.0' in r.stdout


def test_config_toml_pastes_back_and_says_where_values_came_from(tmp_path: Path, ipc_dir: str) -> None:
    env = clean_env(ipc_dir, AITRADOS_BUS__HEARTBEAT_LIVENESS="7")
    (tmp_path / "aitrados.toml").write_text("[trading]\nreport_dir = 'mine'\n[plugins.sma_cross]\nfast = 5\n")
    r = aitrados("config", "--origin", "--set", "trading.broker.initial_cash=5000", env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert 'report_dir = "mine" # from aitrados.toml' in lines
    assert "fast = 5 # from aitrados.toml" in lines
    assert "initial_cash = 5000.0 # from command line" in lines
    assert "heartbeat_liveness = 7 # from environment" in lines
    assert "hwm = 100000 # from default" in lines
    pasted = aitrados("config", "--toml", "--set", "trading.broker.initial_cash=5000", env=env, cwd=tmp_path)
    (tmp_path / "pasted.toml").write_text(pasted.stdout)
    again = aitrados("config", "--toml", env={**env, "AITRADOS_CONFIG": str(tmp_path / "pasted.toml")}, cwd=tmp_path)
    assert again.returncode == 0 and again.stdout == pasted.stdout  # the printed TOML is the same settings
