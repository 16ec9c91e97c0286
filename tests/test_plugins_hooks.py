"""Every hook, called by a real host on a real middleware (inproc bus, real entry points)."""

from __future__ import annotations

import argparse
import datetime as dt
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from fixtures.plugin_env import install

from aitrados.pluginhost.host import PluginHost
from aitrados.marketdata.models import Bar, CalendarEvent, NewsItem
from aitrados.middleware import Middleware
from aitrados.pluginhost.errors import PluginError

pytestmark = pytest.mark.timeout(60)

T0 = dt.datetime(2024, 1, 2, 14, 30, tzinfo=dt.timezone.utc)
BAR = Bar("STOCK:US:SPY", "5M", T0, T0 + dt.timedelta(minutes=5), 470.0, 471.5, 469.8, 471.0, 12345.0)
NEWS = NewsItem(T0, "Fed holds rates", "text", "wire", "STOCK:US:SPY")
EVENT = CalendarEvent("US", "CPI", "Consumer prices", T0, "high", 3)


def wait_for(pred: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


@pytest.fixture
def recorder() -> Iterator[list[tuple[str, Any]]]:
    from aitrados_testplugins import recorder as rec

    rec.SEEN.clear()
    yield rec.SEEN
    rec.SEEN.clear()


@pytest.fixture
def host_factory(tmp_path, monkeypatch, mw: Middleware) -> Iterator[Callable[..., PluginHost]]:
    install(tmp_path, monkeypatch)
    hosts: list[PluginHost] = []

    def make(names: list[str], **kw: Any) -> PluginHost:
        h = PluginHost(mw.settings, names=names, **kw).start(mw)
        hosts.append(h)
        return h

    yield make
    for h in hosts:
        h.stop()


def test_on_startup_and_on_shutdown_get_the_host(host_factory, recorder) -> None:
    h = host_factory(["recorder"])
    # on_startup ran with a host whose RPC client reached the middleware
    assert recorder[0] == ("on_startup", True)
    h.stop()
    assert recorder[-1] == ("on_shutdown", True)


EVENTS = [
    ("on_bar", "ohlc.STOCK:US:SPY.5M", BAR, BAR),
    ("on_chart", "chart.STOCK:US:SPY.5M", {"bars": 3, "seq": 7}, ("STOCK:US:SPY", "5M", {"bars": 3, "seq": 7})),
    ("on_mtf", "mtf.us_index", {"frontier": "t", "members": 2}, ("us_index", {"frontier": "t", "members": 2})),
    ("on_news", "news.STOCK:US:SPY", NEWS, NEWS),
    ("on_calendar_event", "calendar.US", EVENT, EVENT),
    ("on_order", "order.accepted", {"id": 1, "status": "accepted"}, {"id": 1, "status": "accepted"}),
    ("on_fill", "fill.STOCK:US:SPY", {"order_id": 1, "price": 471.0}, {"order_id": 1, "price": 471.0}),
    ("on_position", "position.STOCK:US:SPY", {"qty": 10}, {"qty": 10}),
]


@pytest.mark.parametrize("hook,topic,published,expected", EVENTS, ids=[e[0] for e in EVENTS])
def test_event_topics_reach_their_hook(host_factory, recorder, mw, hook, topic, published, expected) -> None:
    h = host_factory(["recorder"])
    # the host's own publisher: its path through the router is proven by the host's start-up probe
    h.context.publish(topic, published)
    h.context.publish("unrelated.topic", {"x": 1})
    assert wait_for(lambda: any(k == hook for k, _ in recorder))
    got = [v for k, v in recorder if k == hook]
    assert got == [expected]
    assert type(got[0]) is type(expected)  # records come back as their msgspec types
    assert h.events == {hook: 1}


def test_a_raising_notification_hook_is_counted_and_others_still_get_the_event(host_factory, recorder, mw) -> None:
    from loguru import logger

    logged: list[str] = []
    sink = logger.add(lambda m: logged.append(str(m)), level="ERROR", format="{message}")
    h = host_factory(["recorder", "raiser"])
    for _ in range(12):
        h.context.publish("ohlc.STOCK:US:SPY.5M", BAR)
    assert wait_for(lambda: sum(k == "on_bar" for k, _ in recorder) == 12)
    logger.remove(sink)
    # logged with the plugin's name: the first with its traceback, then #2, #3, #10 (no flood)
    assert len(logged) == 4 and all("plugin 'raiser' hook on_bar raised RuntimeError" in m for m in logged)
    assert "Traceback" in logged[0] and "error #10 of this hook" in logged[3]
    # raiser runs first (tryfirst) and raises each time; recorder still got every bar
    assert h.runner.error_counts() == {"raiser": {"on_bar": 12}}
    st = {p["name"]: p for p in h.status()["plugins"]}
    assert st["raiser"]["errors"] == {"on_bar": 12} and st["recorder"]["errors"] == {}


def test_check_order_first_decision_wins_and_a_raising_check_rejects(host_factory) -> None:
    h = host_factory(["raiser", "risk"])
    ctx = {"max_quantity": 50}
    assert h.check_order({"symbol": "OK", "quantity": 1}, ctx).accepted  # risk returns True
    no = h.check_order({"symbol": "X", "quantity": 99}, ctx)
    assert (no.accepted, no.reason, no.plugin) == (False, "quantity 99 above the limit", "risk")
    # nobody objects: accepted with no deciding plugin
    assert h.check_order({"symbol": "X", "quantity": 1}, ctx).to_dict() == {"accepted": True, "reason": "",
                                                                             "plugin": None}
    # raising implementation: rejected, fail closed, named, counted
    boom = h.check_order({"symbol": "BOOM", "quantity": 1}, ctx)
    assert not boom.accepted and boom.plugin == "raiser" and "risk model exploded" in boom.reason
    assert h.runner.error_counts()["raiser"] == {"check_order": 1}


def test_check_order_over_rpc_through_the_plugins_service(host_factory, mw) -> None:
    host_factory(["risk"])
    with mw.rpc_client(timeout=5) as c:
        r = c.call("plugins", "check_order", order={"symbol": "X", "quantity": 500}, context={"max_quantity": 10})
    assert r == {"accepted": False, "reason": "quantity 500 above the limit", "plugin": "risk"}


def test_register_risk_rules(host_factory) -> None:
    h = host_factory(["risk"])
    rule = h.context.risk_rules["max_notional"]
    assert rule({"quantity": 10, "price": 50}, None) is None
    assert rule({"quantity": 10, "price": 500}, None) == "notional above 1000"


def test_register_llm_models(host_factory) -> None:
    import asyncio

    h = host_factory(["risk"])
    assert asyncio.run(h.context.llm("echo")("hi")) == "echo: hi"
    assert asyncio.run(h.context.llm()("only one")) == "echo: only one"
    with pytest.raises(PluginError, match="no LLM model 'gpt'; registered: echo"):
        h.context.llm("gpt")


def test_register_providers(host_factory) -> None:
    h = host_factory(["risk"])
    assert h.context.providers == {"static": {"bars": [1, 2, 3]}}
    assert h.registry.providers["static"][0] == "risk"  # who registered it


def test_register_services_with_register_settings(host_factory, mw) -> None:
    mw.settings.plugins["configured"] = {"threshold": 9}
    h = host_factory(["configured"])
    assert h.context.plugin_settings("configured").threshold == 9
    with mw.rpc_client(timeout=5) as c:  # the plugin's service is on the bus; on_startup saw the settings
        assert c.call("greeter", "greet", who="bob") == "hello[9] bob"
    assert "greeter" in h.context.services


def test_register_commands(host_factory, mw) -> None:
    from aitrados.pluginhost.cli import add_commands

    h = host_factory(["configured"])
    assert list(h.registry.commands) == ["double"]
    parser = argparse.ArgumentParser()
    handlers: dict[str, Any] = {}
    add_commands(parser.add_subparsers(dest="command"), handlers, plugin_commands=h.registry.commands)
    args = parser.parse_args(["double", "21"])
    assert handlers["double"](args, mw.settings) == 0
    assert handlers["double"].__doc__ == "command 'double' of plugin 'configured'"


def test_the_plugins_service_reports_status(host_factory, mw) -> None:
    host_factory(["recorder", "import_error"])
    with mw.rpc_client(timeout=5) as c:
        st = c.call("plugins", "status")
    by = {p["name"]: p for p in st["plugins"]}
    assert by["recorder"]["status"] == "loaded" and "on_bar" in by["recorder"]["hooks"]
    assert by["import_error"]["status"] == "failed" and "aitrados_no_such_module" in by["import_error"]["reason"]
