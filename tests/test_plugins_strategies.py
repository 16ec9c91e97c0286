"""register_strategies: strategies built from plugin settings, validated, owned by their plugin, served by the host."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest

from fixtures.plugin_env import install

from aitrados.pluginhost.host import PluginHost
from aitrados.marketdata.models import Bar
from aitrados.pluginhost.settings import PluginHostSettings
from aitrados.pluginhost.errors import PluginLoadError
from aitrados.pluginhost.registry import PluginRegistry
from aitrados.trading import BrokerSettings, PaperBroker, Strategy, TradingEngine

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def installed(tmp_path, monkeypatch):
    return install(tmp_path, monkeypatch)


def registry(plugins: dict | None = None, strict: bool = False) -> PluginRegistry:
    return PluginRegistry(SimpleNamespace(plugins=plugins or {}, plugin_host=PluginHostSettings()), strict=strict)


def test_register_strategies_builds_the_strategy_from_the_plugin_settings(installed) -> None:
    reg = registry({"ticker": {"full_symbol": "STOCK:US:IXIC", "quantity": 3}})
    assert reg.load(["ticker"])[0].status == "loaded"
    s = reg.strategies["ticker"]
    assert isinstance(s, Strategy) and reg.strategy_plugins == {"ticker": "ticker"}
    assert (s.full_symbol, s.quantity, s.symbols, s.intervals) == ("STOCK:US:IXIC", 3, ("STOCK:US:IXIC",), ("DAY",))
    # the registered instance is the one that trades: an engine drives it
    t0 = dt.datetime(2024, 1, 2, 21, tzinfo=dt.timezone.utc)
    bar = Bar("STOCK:US:IXIC", "DAY", t0 - dt.timedelta(hours=6, minutes=30), t0, 10, 11, 9, 10.5, 100)
    engine = TradingEngine([s], PaperBroker(BrokerSettings(initial_cash=1000)))
    (ev,) = engine.handle_bar(bar)
    assert ev.topic == "order.accepted.STOCK:US:IXIC" and ev.payload.quantity == 3
    assert ev.payload.tag == "bar;Bar;close=10.5;pos=0;orders=0;fills=0"


@pytest.mark.parametrize("name,reason", [
    ("not_a_strategy", "plugin 'not_a_strategy' register_strategies: expected an aitrados.trading.Strategy instance, got <object"),
    ("strategy_class", "register an instance: register(MyStrategy(...))"),
    ("same_strategy_name", "plugin 'same_strategy_name' register_strategies: strategy 'ticker' is already "
                           "registered by plugin 'ticker'"),
])
def test_a_bad_strategy_fails_its_plugin_naming_it(installed, name, reason) -> None:
    reg = registry()
    infos = {i.name: i for i in reg.load(["ticker", name])}
    assert infos[name].status == "failed" and reason in (infos[name].reason or ""), infos[name].reason
    assert infos["ticker"].status == "loaded" and list(reg.strategies) == ["ticker"]
    assert reg.strategy_plugins == {"ticker": "ticker"}
    with pytest.raises(PluginLoadError, match=f"plugin '{name}' failed to load"):
        registry(strict=True).load(["ticker", name])


def test_invalid_settings_fail_before_any_strategy_is_registered(installed) -> None:
    reg = registry({"ticker": {"quantty": 2}})
    info = reg.load(["ticker"])[0]
    assert info.status == "failed" and "invalid settings for plugin 'ticker': field 'quantty'" in info.reason
    assert reg.strategies == {} and reg.plugin_settings == {}


def test_host_strategies_lists_in_process_strategies_with_their_plugin(installed, mw) -> None:
    mw.settings.plugins["ticker"] = {"quantity": 2}
    host = PluginHost(mw.settings, names=["ticker", "recorder"])
    assert [(p, s.strategy_name, s.quantity) for p, s in host.strategies()] == [("ticker", "ticker", 2)]
    host.start(mw)
    try:
        assert host.status()["strategies"] == {"ticker": "ticker"}
    finally:
        host.stop()
    # an isolated plugin's strategies run in its worker, not in this process
    iso = PluginHost(mw.settings, names=["ticker", "recorder"], isolate=["ticker"])
    assert iso.strategies() == []


def test_aitrados_plugins_names_each_plugins_strategies(installed) -> None:
    from aitrados.pluginhost.cli import plugin_report

    rows = {r["name"]: r for r in plugin_report(registry().settings, ["ticker", "recorder", "sma_cross"])}
    assert rows["ticker"]["strategies"] == ["ticker"] and rows["recorder"]["strategies"] == []
    assert rows["sma_cross"]["strategies"] == ["sma_cross"]  # the first-party plugin, as installed
