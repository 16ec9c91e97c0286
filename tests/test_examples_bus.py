"""The bus examples run as a user would run them."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from conftest import AITRADOS, PYTHON, bus_settings, cli_env

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(60)


def test_bus_basics_example(ipc_dir: str) -> None:
    s = bus_settings(ipc_dir)
    env = cli_env(s)
    r = subprocess.run([PYTHON, str(ROOT / "examples" / "bus_basics.py")], env=env, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "rpc: hello world" in r.stdout
    assert r.stdout.count("sub: ohlc.STOCK:US:SPX.DAY #") == 3


def test_worker_process_example(ipc_dir: str) -> None:
    s = bus_settings(ipc_dir)
    env = cli_env(s)
    mw = subprocess.Popen([*AITRADOS, "run"], env=env, stderr=subprocess.DEVNULL)
    worker = None
    try:
        deadline = time.monotonic() + 60
        while not any(Path(ipc_dir).glob("*rpc_backend.sock")) and time.monotonic() < deadline:
            time.sleep(0.1)
        worker = subprocess.Popen([PYTHON, str(ROOT / "examples" / "worker_process.py")], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert worker.stdout is not None and "serving 'stats'" in worker.stdout.readline()
        out = ""
        while time.monotonic() < deadline:
            r = subprocess.run([*AITRADOS, "call", "stats", "mean", "values=[1, 2, 3.5]", "--timeout", "30"],
                               env=env, capture_output=True, text=True, timeout=60)
            if r.returncode == 0:
                out = r.stdout
                break
            time.sleep(0.2)
        assert out.strip() == "2.1666666666666665"
        r = subprocess.run([*AITRADOS, "call", "stats", "primes_below", "n=100", "--timeout", "30"], env=env,
                           capture_output=True, text=True, timeout=60)
        assert r.stdout.strip() == "25"
    finally:
        if worker:
            worker.terminate()
            worker.wait(10)
        mw.terminate()
        assert mw.wait(10) == 0
