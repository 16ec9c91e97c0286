"""``aitrados sweep``: grids expand as documented, a sweep on Dask equals the same runs one by one,
and a worker killed mid-sweep loses no run."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from aitrados import sweep
from pydantic import SecretStr

from aitrados.settings import Settings

pytest.importorskip("distributed")
pytestmark = pytest.mark.timeout(300)

GRID = ["sma_cross.fast=5,10", "sma_cross.slow=20"]
PLUGIN = {"full_symbol": "STOCK:US:GOOG", "size": "99.99%"}


def goog_csv(folder: Path) -> Path:
    """backtesting.py's GOOG daily bars (2,148) as a user bar file."""
    from backtesting.test import GOOG

    p = folder / "STOCK_US_GOOG_DAY.csv"
    GOOG.rename_axis("Date").reset_index().to_csv(p, index=False)
    return p


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Base settings (no AITRADOS_* variable, no config file), the runs, and their rows made one by one."""
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("AITRADOS_")}
    d = tmp_path_factory.mktemp("sweep")
    cwd = os.getcwd()
    os.chdir(d)  # no aitrados.toml / .env of the caller
    try:
        s = Settings(_env_file=None)
        s.plugins = {"sma_cross": dict(PLUGIN)}
        s.marketdata.replay_bar_files = [str(goog_csv(d))]
        s.marketdata.replay_bundled = False
        base = sweep.base_settings(s)
        runs = sweep.expand(sweep.parse_grid(GRID))
        serial = sweep.run_serial(runs, base, ["sma_cross"], str(d / "serial"))
        yield {"dir": d, "base": base, "runs": runs, "serial": serial}
    finally:
        os.chdir(cwd)
        os.environ.update(saved)


def _strip(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k not in ("report", "pid")} for r in rows]


def test_parse_grid_and_expand() -> None:
    grid = sweep.parse_grid(["sma_cross.fast=5,10", "trading.broker.commission_bps=0,20", "sma_cross.full_symbol=A:B:C"])
    assert grid == [("sma_cross.fast", [5, 10]), ("trading.broker.commission_bps", [0, 20]),
                    ("sma_cross.full_symbol", ["A:B:C"])]
    runs = sweep.expand(grid)
    assert len(runs) == 4 and len({r.label for r in runs}) == 4
    assert runs[1].params == {"sma_cross.fast": 5, "trading.broker.commission_bps": 20, "sma_cross.full_symbol": "A:B:C"}
    assert runs[1].overrides == {"plugins": {"sma_cross": {"fast": 5, "full_symbol": "A:B:C"}},
                                 "trading": {"broker": {"commission_bps": 20}}}


@pytest.mark.parametrize("bad", ["fast=5", "sma_cross.fast", "sma_cross.fast=", "sma_cross.fast=5,5", ".x=1"])
def test_bad_grid_is_a_clear_error(bad: str) -> None:
    with pytest.raises(ValueError, match="--grid"):
        sweep.parse_grid([bad])


def test_base_settings_carry_no_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = Settings(_env_file=None, secret_key="sk-very-secret-1234")
    s.trading.llm.api_key = SecretStr("llm-secret-5678")
    s.plugins = {"sma_cross": {"fast": 7}}
    base = sweep.base_settings(s)
    text = json.dumps(base)
    assert "very-secret" not in text and "llm-secret" not in text and sweep.MASKED not in text
    assert "secret_key" not in base and "api_key" not in base["trading"]["llm"]
    assert base["plugins"] == {"sma_cross": {"fast": 7}}
    run = sweep.run_settings({"overrides": {"plugins": {"sma_cross": {"slow": 30}}}}, base, str(tmp_path), "rep")
    assert run.plugins == {"sma_cross": {"fast": 7, "slow": 30}} and run.marketdata.provider == "replay"
    assert run.bus.name.startswith("sweep-") and run.bus.rpc_frontend_port == 0 and run.bus.service_token_file is None


def test_sort_rows_puts_missing_values_last() -> None:
    rows = [{"run": "a", "sharpe": 1.0}, {"run": "b", "sharpe": None}, {"run": "c", "sharpe": 2.0},
            {"run": "d", "sharpe": float("nan")}]
    assert [r["run"] for r in sweep.sort_rows(rows, "sharpe")] == ["c", "a", "b", "d"]
    assert [r["run"] for r in sweep.sort_rows(rows, "sharpe", ascending=True)] == ["a", "c", "b", "d"]


def test_serial_runs_differ_by_their_parameters(setup: dict[str, Any]) -> None:
    serial = setup["serial"]
    assert not serial.errors
    assert [r["sma_cross.fast"] for r in serial.rows] == [5, 10]
    assert serial.rows[0]["final_equity"] != serial.rows[1]["final_equity"]  # the grid value reached the strategy
    assert all(r["trades"] > 0 for r in serial.rows)


def test_sweep_on_dask_equals_the_runs_one_by_one(setup: dict[str, Any]) -> None:
    res = sweep.run_sweep(setup["runs"], setup["base"], ["sma_cross"], str(setup["dir"] / "dask"), n_workers=2)
    assert not res.errors
    assert _strip(res.rows) == _strip(setup["serial"].rows)
    reports = [Path(r["report"]) for r in res.rows]
    assert len(set(reports)) == len(reports) and all((p / "metrics.json").is_file() for p in reports)


def test_a_worker_killed_mid_sweep_loses_no_run(setup: dict[str, Any]) -> None:
    from sweep_helpers import killing_run

    out = setup["dir"] / "killed"
    res = sweep.run_sweep(setup["runs"], setup["base"], ["sma_cross"], str(out), n_workers=2, retries=0,
                          run_fn=killing_run)
    killed_pid = int((out / "killed.pid").read_text())  # the first attempt did kill its worker
    assert not res.errors
    assert _strip(res.rows) == _strip(setup["serial"].rows)
    retried = next(r for r in res.rows if r["run"].endswith("fast=10-slow=20"))
    assert retried["pid"] != killed_pid


def test_cli_sweep_writes_the_sorted_table(setup: dict[str, Any], tmp_path: Path) -> None:
    from conftest import AITRADOS

    env = {k: v for k, v in os.environ.items() if not k.startswith("AITRADOS_")}
    env["AITRADOS_PLUGINS"] = json.dumps({"sma_cross": PLUGIN})
    csv_file = setup["base"]["marketdata"]["replay_bar_files"][0]
    r = subprocess.run([*AITRADOS, "sweep", "--plugins", "sma_cross", *[a for g in GRID for a in ("--grid", g)],
                        "--data", csv_file, "--workers", "2", "--metric", "final_equity", "--no-progress",
                        "--out", str(tmp_path / "out")], env=env, cwd=tmp_path, capture_output=True, text=True,
                       timeout=280)
    assert r.returncode == 0, r.stderr[-3000:]
    table = pd.read_csv(tmp_path / "out" / "results.csv")
    want = sorted(setup["serial"].rows, key=lambda row: row["final_equity"], reverse=True)
    assert list(table["run"]) == [w["run"] for w in want]
    assert list(table["final_equity"]) == pytest.approx([w["final_equity"] for w in want], rel=1e-12)
    assert "sma_cross.fast" in r.stdout and "results.csv" in r.stdout


def test_cli_sweep_rejects_an_unknown_metric(tmp_path: Path) -> None:
    from conftest import AITRADOS

    env = {k: v for k, v in os.environ.items() if not k.startswith("AITRADOS_")}
    r = subprocess.run([*AITRADOS, "sweep", "--grid", "sma_cross.fast=5", "--metric", "nope"], env=env, cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "unknown --metric 'nope'" in r.stderr and "sharpe" in r.stderr
