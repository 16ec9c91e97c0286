"""The first-party plugins through their real entry points: settings, strategies, the OpenAI-compatible model.

Each loads as installed (``pip install -e``), registers its strategy built from
``settings.plugins[name]``, rejects a misspelt setting naming the plugin and the field, and
with its defaults trades on the bundled STOCK:US:SPX days. ``openai_llm`` is checked against
a small OpenAI-compatible HTTP server on loopback, and gates ``llm_gated`` in a real host.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from aitrados.pluginhost.host import PluginHost
from aitrados.marketdata.align import Aligner
from aitrados.marketdata.chart import resample_bars
from aitrados.marketdata.intervals import interval_rank
from aitrados.marketdata.loader import bundled_bar_files, load_bars
from aitrados.pluginhost.registry import PluginRegistry, installed_plugins
from aitrados.settings import load_settings
from aitrados.trading import Strategy, TradingEngine
from aitrados.trading.llm import ChatClient

pytestmark = pytest.mark.timeout(60)

SPX = "STOCK:US:SPX"
ENTRY_POINTS = {
    "sma_cross": "aitrados_strategies.sma_cross",
    "rsi_reversion": "aitrados_strategies.rsi_reversion",
    "mtf_trend": "aitrados_strategies.mtf_trend",
    "llm_gated": "aitrados_strategies.llm_gated",
    "openai_llm": "aitrados_plugins.openai_llm",
}
STRATEGIES = ["sma_cross", "rsi_reversion", "mtf_trend", "llm_gated"]
#: One changed setting per plugin, and where it must show.
CONFIGURED = {
    "sma_cross": ({"fast": 5, "slow": 20, "quantity": 3, "full_symbol": "stock:us:ixic"},
                  lambda s: (s.fast.period, s.slow.period, s.quantity, s.symbols) == (5, 20, 3, ("STOCK:US:IXIC",))),
    "rsi_reversion": ({"period": 7, "oversold": 25, "interval": "week"},
                      lambda s: (s.rsi.period, s.oversold, s.intervals) == (7, 25, ("WEEK",))),
    "mtf_trend": ({"lower": "60m", "higher": "DAY", "group": "spx_hourly"},
                  lambda s: s.groups == {"spx_hourly": {SPX: ["60M", "DAY"]}} and s.intervals == ("60M", "DAY")),
    "llm_gated": ({"timeout": 0.5, "fallback_approve": True, "context_bars": 5},
                  lambda s: (s.gate.timeout, s.gate.fallback, s.recent.maxlen) == (0.5, True, 5)),
}


def registry(plugins: dict[str, Any] | None = None) -> PluginRegistry:
    return PluginRegistry(load_settings(plugins=plugins or {}))


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_each_first_party_plugin_is_an_installed_entry_point(name: str) -> None:
    eps, _ = installed_plugins()
    assert eps[name].value == ENTRY_POINTS[name]
    assert eps[name].dist is not None and eps[name].dist.metadata["Name"] == "aitrados"


@pytest.mark.parametrize("name", STRATEGIES)
def test_a_strategy_plugin_registers_its_strategy_from_its_settings(name: str) -> None:
    cfg, check = CONFIGURED[name]
    reg = registry({name: cfg})
    info = reg.load([name])[0]
    assert info.status == "loaded", info.reason
    assert "register_strategies" in info.hooks and "register_settings" in info.hooks
    assert list(reg.strategies) == [name] and reg.strategy_plugins == {name: name}
    strategy = reg.strategies[name]
    assert isinstance(strategy, Strategy) and check(strategy)


@pytest.mark.parametrize("name,bad,field", [
    ("sma_cross", {"fsat": 5}, "fsat"),
    ("rsi_reversion", {"oversld": 20}, "oversld"),
    ("mtf_trend", {"higer": "WEEK"}, "higer"),
    ("llm_gated", {"llm_modle": "openai"}, "llm_modle"),
    ("openai_llm", {"base_ulr": "http://x/v1"}, "base_ulr"),
    ("sma_cross", {"interval": "2D"}, "interval"),
    ("mtf_trend", {"full_symbol": "SPX"}, "full_symbol"),
    ("sma_cross", {"size": "lots"}, "size"),
    ("rsi_reversion", {"size": "150%"}, "size"),
    ("sma_cross", {"entry": "sometimes"}, "entry"),
])
def test_a_misspelt_setting_fails_the_plugin_naming_plugin_and_field(name: str, bad: dict, field: str) -> None:
    reg = registry({name: bad})
    info = reg.load([name])[0]
    assert info.status == "failed"
    assert f"invalid settings for plugin {name!r}: field {field!r}" in info.reason, info.reason
    assert reg.strategies == {} and reg.llm_models == {}


@pytest.mark.parametrize("name,bad,message", [
    ("sma_cross", {"fast": 30, "slow": 10}, "fast (30) must be below slow (10)"),
    ("mtf_trend", {"lower": "WEEK", "higher": "DAY"}, "lower (WEEK) must be a shorter interval than higher (DAY)"),
    ("rsi_reversion", {"oversold": 60}, "need 0 < oversold < exit_long"),
])
def test_inconsistent_settings_are_refused_with_the_reason(name: str, bad: dict, message: str) -> None:
    info = registry({name: bad}).load([name])[0]
    assert info.status == "failed" and f"invalid settings for plugin {name!r}" in info.reason
    assert message in info.reason, info.reason


# ------------------------------------------------------------------ defaults on the bundled data
def spx_days() -> list[Any]:
    return load_bars(bundled_bar_files()[(SPX, "DAY")]).bars


def default_strategy(name: str, plugins: dict[str, Any] | None = None) -> Any:
    reg = registry(plugins)
    assert reg.load([name])[0].status == "loaded"
    return reg.strategies[name]


@pytest.mark.parametrize("name", ["sma_cross", "rsi_reversion"])
def test_defaults_trade_the_bundled_spx_days(name: str) -> None:
    strategy = default_strategy(name)
    engine = TradingEngine([strategy])
    events = engine.run(spx_days())
    fills = [e.payload for e in events if e.topic.startswith("fill.")]
    assert not engine.errors
    assert len(fills) >= 4 and {f.full_symbol for f in fills} == {SPX}
    assert {f.side for f in fills} == {"buy", "sell"} and all(f.quantity == 10 for f in fills)


def test_mtf_trend_defaults_trade_aligned_spx_days_and_weeks() -> None:
    strategy = default_strategy("mtf_trend")
    (group, members), = strategy.groups.items()
    assert members == {SPX: ["DAY", "WEEK"]}
    days = spx_days()
    weeks = [w for w in resample_bars(days, "WEEK") if w.closed]
    aligner = Aligner()
    aligner.add_group(group, members)
    engine = TradingEngine([strategy])
    events = []
    for bar in sorted(days + weeks, key=lambda b: (b.close_datetime, interval_rank(b.interval))):
        if bar.interval == "DAY":
            events += engine.handle_bar(bar)
        for snap in aligner.feed(bar, now=bar.close_datetime):  # lateness: unknown holidays
            events += engine.handle_mtf(snap)
    fills = [e.payload for e in events if e.topic.startswith("fill.")]
    assert not engine.errors and len(fills) >= 4 and {f.side for f in fills} == {"buy", "sell"}


# ------------------------------------------------------------------ openai_llm and llm_gated
class ChatServer:
    """An OpenAI-compatible ``/v1/chat/completions`` on loopback that approves and records requests."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], dict[str, Any]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append((self.path, dict(self.headers), body))
                reply = json.dumps({"model": body["model"], "choices": [{"index": 0, "finish_reason": "stop", "message": {
                    "role": "assistant", "content": '{"decision": "approve", "reason": "trend is up"}'}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ChatServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def chat_server() -> Iterator[ChatServer]:
    with ChatServer() as s:
        yield s


def test_openai_llm_registers_a_chat_client_configured_by_its_settings(chat_server, monkeypatch) -> None:
    monkeypatch.setenv("MY_LLM_KEY", "sk-test-123")
    reg = registry({"openai_llm": {"name": "local", "base_url": chat_server.url, "model": "tiny",
                                   "api_key_env": "MY_LLM_KEY", "timeout": 3}})
    assert reg.load(["openai_llm"])[0].status == "loaded"
    plugin, client = reg.llm_models["local"]
    assert plugin == "openai_llm" and isinstance(client, ChatClient)
    assert "sk-test" not in repr(client)
    assert client.complete("hello?") == '{"decision": "approve", "reason": "trend is up"}'
    path, headers, body = chat_server.requests[0]
    assert path == "/v1/chat/completions" and headers["Authorization"] == "Bearer sk-test-123"
    assert body["model"] == "tiny" and body["messages"] == [{"role": "user", "content": "hello?"}]


@pytest.mark.timeout(90)
def test_llm_gated_asks_the_model_openai_llm_registered_in_a_real_host(chat_server, mw) -> None:
    mw.settings.plugins.update({"openai_llm": {"base_url": chat_server.url, "model": "tiny"},
                                "llm_gated": {"llm_model": "openai", "timeout": 5}})
    host = PluginHost(mw.settings, names=["openai_llm", "llm_gated"]).start(mw)
    try:
        (plugin, strategy), = host.strategies()
        assert plugin == "llm_gated" and strategy.gate.model is host.context.llm("openai")
        engine = TradingEngine([strategy])
        events = engine.run(spx_days()[:400])
    finally:
        host.stop()
    decisions = [d for _, _, d in strategy.decisions]
    assert decisions and all(d.approved and d.source == "model" for d in decisions)
    assert len(chat_server.requests) == len(decisions)
    assert "SMA10" in chat_server.requests[0][2]["messages"][1]["content"]
    entries = [e.payload for e in events if e.topic.startswith("order.accepted") and e.payload.tag == "entry"]
    assert len(entries) == len(decisions)  # every approved signal was traded


def test_llm_gated_without_its_model_falls_back_to_veto(mw) -> None:
    mw.settings.plugins["llm_gated"] = {"llm_model": "nowhere"}
    host = PluginHost(mw.settings, names=["llm_gated"]).start(mw)
    try:
        (_, strategy), = host.strategies()
        engine = TradingEngine([strategy])
        events = engine.run(spx_days()[:400])
    finally:
        host.stop()
    assert strategy.decisions and all(not d.approved and d.source == "fallback" for _, _, d in strategy.decisions)
    assert "is not available" in strategy.decisions[0][2].reason
    assert not [e for e in events if e.topic.startswith("fill.")]
