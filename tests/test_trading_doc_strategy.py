"""docs/trading.md "A complete strategy from scratch": the page's module, word for word, is a plugin
that the registry loads through its entry point, and its backtest equals pandas on the bundled data."""

from __future__ import annotations

import importlib
import re
import sys
from types import SimpleNamespace

import pandas as pd
import pytest

from fixtures.plugin_env import install

from aitrados.marketdata.loader import bundled_bar_files, load_bars
from aitrados.pluginhost.settings import PluginHostSettings
from aitrados.pluginhost.registry import PluginRegistry
from aitrados.trading import build_report
from aitrados.trading.engine import engine_from_settings
from aitrados.trading.settings import TradingSettings

from conftest import ROOT

pytestmark = pytest.mark.timeout(120)
SECTION = "## A complete strategy from scratch"


def doc_module() -> str:
    """The first python block of the section."""
    doc = (ROOT / "docs" / "trading.md").read_text()
    section = doc[doc.index(SECTION):]
    section = section[:section.index("\n## ", len(SECTION))]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def pandas_fills(lookback: int, qty: float) -> list[tuple[str, float, float]]:
    """Long *qty* while close > close *lookback* bars earlier, filled at the next open: (date, signed qty, price)."""
    df = pd.read_csv(bundled_bar_files()[("STOCK:US:SPX", "DAY")])
    close, prev = df["Close"].to_numpy(), df["Close"].shift(lookback).to_numpy()
    dates = pd.to_datetime(df["Date"], format="%m/%d/%Y").dt.strftime("%Y-%m-%d").to_numpy()
    fills, pos = [], 0.0
    for i in range(lookback, len(df) - 1):
        want = qty if close[i] > prev[i] else 0.0
        if want != pos:
            fills.append((dates[i + 1], want - pos, df["Open"].iloc[i + 1]))
            pos = want
    return fills


def test_the_documented_strategy_loads_as_a_plugin_and_matches_pandas(tmp_path, monkeypatch) -> None:
    pkg = tmp_path / "src" / "aitrados_momentum"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "plugin.py").write_text(doc_module())
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    install(tmp_path, monkeypatch, {"momentum": "aitrados_momentum.plugin"}, dist="aitrados-momentum")
    monkeypatch.delitem(sys.modules, "aitrados_momentum", raising=False)
    importlib.invalidate_caches()

    reg = PluginRegistry(SimpleNamespace(plugins={"momentum": {"lookback": 30, "quantity": 5}},
                                         plugin_host=PluginHostSettings()), strict=True)
    assert reg.load(["momentum"])[0].status == "loaded"
    strategy = reg.strategies["momentum"]
    assert (strategy.settings.lookback, strategy.symbols, strategy.intervals) == (30, ("STOCK:US:SPX",), ("DAY",))
    with pytest.raises(Exception, match="lookbak"):  # a misspelt key is an error naming it
        PluginRegistry(SimpleNamespace(plugins={"momentum": {"lookbak": 3}}, plugin_host=PluginHostSettings()),
                       strict=True).load(["momentum"])

    engine = engine_from_settings([strategy], TradingSettings())
    engine.run(load_bars(bundled_bar_files()[("STOCK:US:SPX", "DAY")]).bars)
    report = build_report(engine.broker, "DAY")
    expected = pandas_fills(30, 5.0)
    entries, exits = [f for f in expected if f[1] > 0], [f for f in expected if f[1] < 0]
    assert len(entries) > 10
    assert [(t.entry_time.date().isoformat(), t.entry_price) for t in report.trades] == [
        (d, pytest.approx(p)) for d, _, p in entries]
    assert [(t.exit_time.date().isoformat(), t.exit_price) for t in report.trades if t.closed] == [
        (d, pytest.approx(p)) for d, _, p in exits]
    position = sum(q for _, q, _ in expected)
    cash = TradingSettings().broker.initial_cash - sum(q * p for _, q, p in expected)
    last_close = float(pd.read_csv(bundled_bar_files()[("STOCK:US:SPX", "DAY")])["Close"].iloc[-1])
    assert report.metrics.final_equity == pytest.approx(cash + position * last_close)
