"""`aitrados run` as a person runs it (real subprocesses): loud failures with honest exit codes,
own data and parameters from the command line, two backtests at once, partial reports on Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import AITRADOS, ROOT
from test_main_job import CSV, pandas_backtest

pytestmark = pytest.mark.timeout(240)
FIXTURES = ROOT / "tests" / "fixtures"
EXPLODING = "aitrados_testplugins.exploding_strategy:Plugin"


def clean_env(ipc_dir: str, name: str = "cli", **extra: str) -> dict[str, str]:
    """The caller's environment without any AITRADOS_* variable, plus a private bus folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AITRADOS_")}
    env.update(AITRADOS_BUS__IPC_DIR=ipc_dir, AITRADOS_BUS__NAME=f"{name}{os.getpid()}",
               PYTHONPATH=os.pathsep.join([str(FIXTURES), env.get("PYTHONPATH", "")]), **extra)
    return env


def aitrados(*args: str, env: dict[str, str], cwd: Path, timeout: float = 150) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*AITRADOS, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


# ------------------------------------------------------------------ fail loudly
@pytest.mark.parametrize("plugin, cause", [
    ("buggy:", "module:attribute"),
    ("os:no_such_thing", "has no attribute 'no_such_thing'"),
])
def test_a_named_plugin_that_fails_to_load_stops_the_run(plugin: str, cause: str, tmp_path: Path,
                                                          ipc_dir: str) -> None:
    r = aitrados("run", "--plugins", plugin, env=clean_env(ipc_dir), cwd=tmp_path, timeout=60)
    assert r.returncode != 0
    assert plugin in r.stderr and cause in r.stderr
    assert "ready:" not in r.stderr and "Traceback" not in r.stderr


def test_bad_plugin_settings_stop_the_run_naming_the_field(tmp_path: Path, ipc_dir: str) -> None:
    r = aitrados("run", "--plugins", "sma_cross", "--set", "sma_cross.fast=abc", env=clean_env(ipc_dir),
                 cwd=tmp_path, timeout=60)
    assert r.returncode == 1 and "sma_cross" in r.stderr and "'fast'" in r.stderr and "ready:" not in r.stderr


def test_plugins_that_leave_no_strategy_are_an_error_unless_serve(tmp_path: Path, ipc_dir: str) -> None:
    r = aitrados("run", "--plugins", "openai_llm", env=clean_env(ipc_dir), cwd=tmp_path, timeout=60)
    assert r.returncode == 1 and "no strategy" in r.stderr and "--serve" in r.stderr


@pytest.mark.parametrize("args, says", [
    (["run", "--plugins", "sma_cross", "--report-dir", "/proc/x"], "--report-dir '/proc/x'"),
    (["--log-level", "debg", "run", "--plugins", "sma_cross"], "log level 'debg'"),
    (["run", "--plugins", "sma_cross", "--speed", "fast"], "--speed 'fast'"),
    (["run", "--plugins", "sma_cross", "--speed", "0/s"], "bars per second must be > 0"),
    (["run", "--plugins", "sma_cross", "--isolate", "rsi_reversion"], "--isolate rsi_reversion: not among --plugins"),
    (["run", "--plugins", "sma_cross", "--data", "no_such.csv"], "--data 'no_such.csv': no such file"),
    (["run", "--plugins", "sma_cross", "--from", "yesterday"], "--from 'yesterday'"),
    (["run", "--plugins", "sma_cross", "--set", "trading.broker.initial_cash=lots"], "trading.broker.initial_cash"),
    (["run", "--plugins", "sma_cross", "--set", "nosuch.x=1"], "'nosuch' is neither a setting"),
    (["config", "--set", "log_level=LOUD"], "log level 'LOUD'"),
])
def test_bad_values_are_one_line_errors_before_anything_starts(args: list[str], says: str, tmp_path: Path,
                                                                ipc_dir: str) -> None:
    r = aitrados(*args, env=clean_env(ipc_dir), cwd=tmp_path, timeout=60)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: ") and says in r.stderr, r.stderr
    assert not (tmp_path / "aitrados-report").exists()


def test_a_raising_strategy_is_counted_reported_and_fails_the_run(tmp_path: Path, ipc_dir: str) -> None:
    env = clean_env(ipc_dir)
    r = aitrados("run", "--plugins", EXPLODING, "--report-dir", "rep", env=env, cwd=tmp_path)
    assert r.returncode == 1, r.stderr[-2000:]
    assert r.stderr.count("Traceback") == 1  # the first traceback once, then a count
    metrics = json.loads((tmp_path / "rep" / "latest" / "metrics.json").read_text())
    assert metrics["strategy_errors"] == {"exploding.on_bar: ZeroDivisionError": 5031}  # every bundled day
    assert "strategy errors: 5031" in r.stdout and "5031 x exploding.on_bar: ZeroDivisionError" in r.stdout
    assert "strategy errors: 5031" in (tmp_path / "rep" / "latest" / "summary.txt").read_text()
    assert "5031 strategy callback error(s)" in r.stderr
    allowed = aitrados("run", "--plugins", EXPLODING, "--report-dir", "rep2",
                       "--set", "trading.allow_strategy_errors=true", env=env, cwd=tmp_path)
    assert allowed.returncode == 0, allowed.stderr[-2000:]
    assert json.loads((tmp_path / "rep2" / "latest" / "metrics.json").read_text())["strategy_errors"] == metrics["strategy_errors"]


def test_a_backtest_prints_few_lines_and_reads_each_data_file_once(tmp_path: Path, ipc_dir: str) -> None:
    rows = CSV.read_text().splitlines()
    (tmp_path / "GAPPY.csv").write_text("\n".join(rows[:1000] + rows[1020:]) + "\n")  # four weeks missing
    r = aitrados("run", "--plugins", "sma_cross", "--data", "GAPPY.csv", "--report-dir", "rep",
                 env=clean_env(ipc_dir), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stderr.splitlines()
    for routine in ("said goodbye", "Router Started", "replay ended at", "plugin host st", "Register RPC Service"):
        assert not any(routine in ln for ln in lines), routine
    gaps = [ln for ln in lines if "GAPPY.csv" in ln and "gap" in ln]
    assert len(gaps) == 1, r.stderr  # the file is read once, so its data issue is logged once
    assert sum(1 for ln in lines if "| INFO" in ln and "data issue" not in ln) <= 8, r.stderr
    assert sum("ready:" in ln for ln in lines) == 1


# ------------------------------------------------------------------ own data and parameters
def test_own_csv_and_parameters_from_the_command_line_match_pandas(tmp_path: Path, ipc_dir: str) -> None:
    (tmp_path / "GOOG.csv").write_bytes(CSV.read_bytes())  # a file whose name is only a ticker
    r = aitrados("run", "--plugins", "sma_cross", "--data", "GOOG.csv", "--set", "sma_cross.fast=10",
                 "--set", "sma_cross.slow=30", "--set", "sma_cross.quantity=10",
                 "--set", "trading.broker.initial_cash=50000", "--report-dir", "rep",
                 env=clean_env(ipc_dir), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "sma_cross: STOCK:US:GOOG DAY" in r.stderr
    assert "IXIC" not in r.stderr  # with --data the bundled data is off
    metrics = json.loads((tmp_path / "rep" / "latest" / "metrics.json").read_text())
    equity, n_fills, _ = pandas_backtest(10, 30, 10.0, cash=50_000.0)
    assert metrics["initial_cash"] == 50_000.0
    assert metrics["final_equity"] == pytest.approx(equity, abs=1e-6)
    trades = pd.read_csv(tmp_path / "rep" / "latest" / "trades.csv")
    assert set(trades.full_symbol) == {"STOCK:US:GOOG"} and abs(len(trades) * 2 - n_fills) <= 1


def test_from_and_to_bound_the_replay(tmp_path: Path, ipc_dir: str) -> None:
    r = aitrados("run", "--plugins", "sma_cross", "--from", "2010-01-01", "--to", "2011-12-31",
                 "--report-dir", "rep", env=clean_env(ipc_dir), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    eq = pd.read_csv(tmp_path / "rep" / "latest" / "equity.csv")
    assert eq.datetime.iloc[0][:10] == "2010-01-04" and eq.datetime.iloc[-1][:10] == "2011-12-30"
    days = pd.read_csv(CSV)
    days["Date"] = pd.to_datetime(days["Date"], format="%m/%d/%Y")
    assert len(eq) == int(((days.Date >= "2010-01-01") & (days.Date <= "2011-12-31")).sum())


# ------------------------------------------------------------------ two runs at once
def test_two_backtests_at_once_both_succeed_with_identical_reports(tmp_path: Path, ipc_dir: str) -> None:
    env = clean_env(ipc_dir, name="same")  # the same bus name and the default tcp ports for both
    procs = []
    for i in range(2):
        (tmp_path / f"r{i}").mkdir()
        procs.append(subprocess.Popen([*AITRADOS, "run", "--plugins", "sma_cross", "--report-dir", "rep"], env=env,
                                      cwd=tmp_path / f"r{i}", stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    outs = [p.communicate(timeout=200) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    reports = [((tmp_path / f"r{i}" / "rep" / "latest" / "trades.csv").read_text(),
                (tmp_path / f"r{i}" / "rep" / "latest" / "metrics.json").read_text()) for i in range(2)]
    assert reports[0] == reports[1]


# ------------------------------------------------------------------ Ctrl-C
class Lines:
    """Collects a child's stderr lines in a thread; ``wait_for`` blocks with a deadline."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._t = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._t.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()

    def wait_for(self, text: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not any(text in ln for ln in self.lines):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True


def test_ctrl_c_mid_replay_exits_130_with_a_partial_report(tmp_path: Path, ipc_dir: str) -> None:
    p = subprocess.Popen([*AITRADOS, "run", "--plugins", "sma_cross", "--speed", "100/s", "--report-dir", "rep"],
                         env=clean_env(ipc_dir), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        lines = Lines(p)
        assert lines.wait_for("ready:", 90), "".join(lines.lines)
        p.send_signal(signal.SIGINT)
        out = p.stdout.read() if p.stdout else ""
        assert p.wait(60) == 130, "".join(lines.lines)[-3000:]
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)
    metrics = json.loads((tmp_path / "rep" / "latest" / "metrics.json").read_text())
    assert metrics["partial"] is True and metrics["points"] < 5031
    assert "PARTIAL" in (tmp_path / "rep" / "latest" / "summary.txt").read_text() and "PARTIAL" in out


def test_an_isolated_raising_strategy_is_counted_in_the_run_too(tmp_path: Path, ipc_dir: str) -> None:
    r = aitrados("run", "--plugins", EXPLODING, "--isolate", EXPLODING, "--report-dir", "rep",
                 env=clean_env(ipc_dir), cwd=tmp_path, timeout=200)
    assert r.returncode == 1, r.stderr[-3000:]
    assert r.stderr.count("exploding.on_bar raised ZeroDivisionError") == 1  # logged once, in the worker
    metrics = json.loads((tmp_path / "rep" / "latest" / "metrics.json").read_text())
    # counted in the middleware from the worker's acks (not the exact 5031: under load an isolated
    # worker has been seen to miss steps, a lock-step issue outside this test)
    assert list(metrics["strategy_errors"]) == ["exploding.on_bar: ZeroDivisionError"]
    assert 0 < metrics["strategy_errors"]["exploding.on_bar: ZeroDivisionError"] <= 5031
