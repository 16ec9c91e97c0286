"""The README's main job, run as a user runs it: `aitrados run --plugins sma_cross` on the embedded default.

The oracle is independent: pandas over the bundled CSV file itself (not the project's loader,
replay server or engine) computes the same rule's fills and final equity.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import AITRADOS, bus_settings, cli_env

ROOT = Path(__file__).resolve().parent.parent
CSV = ROOT / "core" / "data" / "bars" / "STOCK_US_SPX_DAY.csv"
pytestmark = pytest.mark.timeout(180)


def pandas_backtest(fast: int, slow: int, qty: float, cash: float = 100_000.0) -> tuple[float, int, pd.DataFrame]:
    """Long *qty* from a close where SMA(fast) crossed above SMA(slow) until one where it crossed below,
    filled at the next day's open; no costs."""
    df = pd.read_csv(CSV)
    df["Date"] = pd.to_datetime(df["Date"], format="%m/%d/%Y")
    f, s = df["Close"].rolling(fast).mean(), df["Close"].rolling(slow).mean()
    up = (f.shift() < s.shift()) & (f > s)
    down = (f.shift() > s.shift()) & (f < s)
    want = pd.Series(np.where(up, qty, np.where(down, 0.0, np.nan))).ffill().to_numpy()  # NaN before the first cross
    pos, fills = 0.0, []
    for i in range(len(df) - 1):
        if np.isnan(want[i]) or want[i] == pos:
            continue
        price = df["Open"].iloc[i + 1]
        cash -= (want[i] - pos) * price
        fills.append((df["Date"].iloc[i + 1], want[i] - pos, price))
        pos = want[i]
    equity = cash + pos * df["Close"].iloc[-1]
    return equity, len(fills), pd.DataFrame(fills, columns=["date", "signed_qty", "price"])


def run_main_job(tmp_path: Path, ipc_dir: str) -> subprocess.CompletedProcess[str]:
    s = bus_settings(ipc_dir)
    env = cli_env(s, AITRADOS_PLUGINS=json.dumps({"sma_cross": {"fast": 10, "slow": 30, "quantity": 10}}))
    env.pop("AITRADOS_SECRET_KEY", None)  # the embedded default: no key, local replay
    return subprocess.run([*AITRADOS, "run", "--plugins", "sma_cross", "--report-dir", str(tmp_path / "report")],
                          env=env, capture_output=True, text=True, timeout=150, cwd=tmp_path)


def test_main_job_matches_pandas_and_writes_the_report(tmp_path: Path, ipc_dir: str) -> None:
    r = run_main_job(tmp_path, ipc_dir)
    assert r.returncode == 0, r.stderr[-3000:]
    report = tmp_path / "report" / "latest"
    metrics = json.loads((report / "metrics.json").read_text())
    equity, n_fills, fills = pandas_backtest(10, 30, 10.0)
    assert metrics["final_equity"] == pytest.approx(equity, abs=1e-6)
    trades = pd.read_csv(report / "trades.csv")
    assert len(trades) == metrics["trades"] and abs(len(trades) * 2 - n_fills) <= 1  # round trips
    # every round trip enters and exits on the oracle's fill days at the oracle's prices
    entries, exits = fills[fills.signed_qty > 0], fills[fills.signed_qty < 0]
    closed = trades[trades.closed]
    assert [str(d.date()) for d in entries.date] == [t[:10] for t in trades.entry_time]
    assert [str(d.date()) for d in exits.date] == [t[:10] for t in closed.exit_time]
    assert list(entries.price) == pytest.approx(list(trades.entry_price))
    assert list(exits.price) == pytest.approx(list(closed.exit_price))
    assert "total return" in r.stdout and "max drawdown" in r.stdout  # the terminal summary
    assert "replay [" in r.stderr and "100.0%" in r.stderr  # progress was shown
    assert (report / "equity.png").read_bytes()[:4] == b"\x89PNG"
    assert len(pd.read_csv(report / "equity.csv")) == 5031  # one point per bundled trading day


def test_main_job_is_deterministic(tmp_path: Path, ipc_dir: str) -> None:
    runs = []
    for i in range(2):
        d = tmp_path / f"run{i}"
        d.mkdir()
        r = run_main_job(d, ipc_dir)
        assert r.returncode == 0, r.stderr[-2000:]
        runs.append(((d / "report" / "latest" / "trades.csv").read_text(),
                     (d / "report" / "latest" / "metrics.json").read_text()))
    assert runs[0] == runs[1]


def test_unknown_plugin_lists_installed_ones(tmp_path: Path, ipc_dir: str) -> None:
    env = cli_env(bus_settings(ipc_dir))
    r = subprocess.run([*AITRADOS, "run", "--plugins", "no_such_plugin"], env=env, capture_output=True, text=True,
                       timeout=60, cwd=tmp_path)
    assert r.returncode != 0 and "no_such_plugin" in r.stderr and "sma_cross" in r.stderr
