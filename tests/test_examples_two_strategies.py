"""examples/two_strategies.py as a user runs it: one strategy isolated, one chart flow, data fetched once."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest

from conftest import PYTHON, bus_settings, cli_env

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(240)


def test_two_strategies_share_one_chart_flow(ipc_dir: str, tmp_path: Path) -> None:
    env = cli_env(bus_settings(ipc_dir), AITRADOS_TRADING__REPORT_DIR=str(tmp_path / "report"))
    r = subprocess.run([PYTHON, str(ROOT / "examples" / "two_strategies.py")], env=env, capture_output=True,
                       text=True, timeout=220, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout
    mw_pid = int(re.search(r"middleware pid (\d+)", out).group(1))
    workers = ast.literal_eval(re.search(r"isolated workers: (\{.*\})", out).group(1))
    fills = ast.literal_eval(re.search(r"fills per strategy: (\{.*\})", out).group(1))
    requests = ast.literal_eval(re.search(r"replay server requests: (\{.*\})", out).group(1))
    assert set(workers) == {"rsi_reversion"} and workers["rsi_reversion"] != mw_pid  # its own process
    assert fills.get("sma_cross", 0) > 0 and fills.get("rsi_reversion", 0) > 0  # both traded one account
    assert requests == {"ohlc_latest": 1}  # the shared window was fetched once for both
    assert (tmp_path / "report" / "latest" / "equity.png").exists()
