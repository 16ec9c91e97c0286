"""Tests of {{ cookiecutter.plugin_name }}: the channel by hand, a real backtest on the bundled data checked
against pandas, and the installed plugin loaded by a real aitrados host."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aitrados.pluginhost import PluginHost
from aitrados.marketdata.loader import bundled_bar_files, load_bars
from aitrados.middleware import Middleware
from aitrados.settings import load_settings
from aitrados.trading import build_report
from aitrados.trading.engine import engine_from_settings
from aitrados.trading.settings import TradingSettings

from {{ cookiecutter.package_name }}.channel import Channel
from {{ cookiecutter.package_name }}.strategy import NAME, Breakout, BreakoutSettings


def test_channel_by_hand() -> None:
    ch = Channel(3)
    seen = []
    for high, low in [(10, 8), (12, 9), (11, 7), (13, 10), (9, 8)]:
        seen.append((ch.upper, ch.lower))
        ch.update(high, low)
    assert seen == [(None, None), (None, None), (None, None), (12, 7), (13, 7)]
    with pytest.raises(ValueError, match="below its low"):
        ch.update(1, 2)


def test_settings_reject_unknown_keys_and_bad_values() -> None:
    with pytest.raises(ValueError, match="entry_barz"):
        BreakoutSettings(entry_barz=5)
    with pytest.raises(ValueError, match="entry_bars"):
        BreakoutSettings(entry_bars=0)
    assert BreakoutSettings(full_symbol="stock:us:spx").full_symbol == "STOCK:US:SPX"


def pandas_fills(path: Path, s: BreakoutSettings) -> list[tuple[str, float, float]]:
    """The rule computed independently with pandas on the data file: (date, signed quantity, next open)."""
    df = pd.read_csv(path)
    upper = df["High"].rolling(s.entry_bars).max().shift(1).to_numpy()
    lower = df["Low"].rolling(s.exit_bars).min().shift(1).to_numpy()
    dates = pd.to_datetime(df["Date"], format="%m/%d/%Y").dt.strftime("%Y-%m-%d").to_numpy()
    fills, long = [], False
    for i in range(len(df) - 1):  # a signal on the last bar has no next open to fill at
        close = df["Close"].iloc[i]
        if not long and not np.isnan(upper[i]) and close > upper[i]:
            fills.append((dates[i + 1], s.quantity, df["Open"].iloc[i + 1]))
            long = True
        elif long and not np.isnan(lower[i]) and close < lower[i]:
            fills.append((dates[i + 1], -s.quantity, df["Open"].iloc[i + 1]))
            long = False
    return fills


def test_backtest_on_the_bundled_data_matches_pandas_and_reports(tmp_path: Path) -> None:
    settings = BreakoutSettings()
    path = bundled_bar_files().get((settings.full_symbol, settings.interval))
    if path is None:
        pytest.skip(f"{settings.full_symbol} {settings.interval} is not bundled with aitrados")
    engine = engine_from_settings([Breakout(settings)], TradingSettings())
    engine.run(load_bars(path).bars)
    report = build_report(engine.broker, settings.interval)
    expected = pandas_fills(path, settings)
    entries = [f for f in expected if f[1] > 0]
    exits = [f for f in expected if f[1] < 0]
    assert len(entries) > 5, "the rule should trade on twenty years of data"
    assert [(t.entry_time.date().isoformat(), t.entry_price) for t in report.trades] == [
        (d, pytest.approx(p)) for d, _, p in entries]
    closed = [t for t in report.trades if t.closed]
    assert [(t.exit_time.date().isoformat(), t.exit_price) for t in closed] == [
        (d, pytest.approx(p)) for d, _, p in exits]
    assert report.metrics.trades == len(report.trades)
    cash = TradingSettings().broker.initial_cash - sum(q * p for _, q, p in expected)
    position = sum(q for _, q, _ in expected)
    last_close = pd.read_csv(path)["Close"].iloc[-1]
    assert report.metrics.final_equity == pytest.approx(cash + position * last_close)
    paths = report.write(tmp_path)
    assert (tmp_path / "trades.csv").is_file() and paths


@pytest.fixture
def ipc_dir() -> Iterator[str]:
    """A short private folder for the bus's ipc files (socket paths must stay under ~100 bytes)."""
    d = tempfile.mkdtemp(prefix="plg-", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.timeout(60)
def test_the_installed_plugin_registers_its_strategy_in_a_real_host(ipc_dir: str) -> None:
    ipc = ipc_dir
    settings = load_settings(
        bus={"name": f"plg{time.time_ns()}", "ipc_dir": ipc, "rpc_frontend_port": 0, "rpc_backend_port": 0,
             "sub_port": 0, "pub_port": 0},
        plugins={NAME: {"entry_bars": 30, "quantity": 2}},
    )
    with Middleware(settings) as mw:
        host = PluginHost(settings, names=[NAME]).start(mw)  # found through its entry point
        try:
            assert host.registry.infos[NAME].status == "loaded"
            [(plugin, strategy)] = host.strategies()
            assert plugin == NAME and isinstance(strategy, Breakout) and strategy.strategy_name == NAME
            assert (strategy.settings.entry_bars, strategy.settings.quantity) == (30, 2.0)
        finally:
            host.stop()
