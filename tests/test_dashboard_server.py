"""The dashboard server against a real runtime: token, WebSocket stream, kill switch, /metrics, report.html.

A real replay (720 one-minute BTCUSD bars through SMA cross) runs with the dashboard on a free
loopback port; a WebSocket client and httpx talk to it like a browser and Prometheus would.
"""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from aitrados.dashboard import DashboardServer
from aitrados.runtime import Runtime

from conftest import joined_subscriber
from test_dashboard_browser import submit_one
from test_trading_runtime import SYM, make_runtime

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def rt(ipc_dir: str, tmp_path):
    r = make_runtime(ipc_dir, str(tmp_path / "report"), dashboard=0)  # 720 one-minute BTCUSD bars, SMA cross 5/20
    try:
        yield r
    finally:
        r.stop()


def metrics(url: str) -> dict[str, list]:
    text = httpx.get(url + "metrics", timeout=10).text
    out: dict[str, list] = {}
    for fam in text_string_to_metric_families(text):
        out[fam.name] = fam.samples
    return out


async def frames_until(ws, cond, timeout: float = 60.0) -> dict:
    """Read frames, folding candle counts, until cond(model) holds; returns the model."""
    model = {"candles": {}, "fills": 0, "status": {}, "clock": {}}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            raw = await asyncio.wait_for(ws.recv(), max(0.1, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            break
        msg = json.loads(raw)
        if msg.get("type") in ("snapshot", "delta"):
            for k, ch in msg.get("charts", {}).items():
                model["candles"][k] = ch["count"]
            model["fills"] += len(msg.get("fills", []))
            model["status"] = msg.get("status") or model["status"]
            model["clock"] = msg.get("clock") or model["clock"]
        else:
            model.setdefault("answers", []).append(msg)
        if cond(model):
            return model
    raise AssertionError(f"condition not met within {timeout}s: {model['candles']}, fills {model['fills']}")


def test_page_needs_the_token_and_the_stream_grows_with_the_replay(rt: Runtime) -> None:
    d = rt.dashboard
    assert d is not None and d.host == "127.0.0.1" and d.port > 0
    assert httpx.get(d.url, timeout=10).status_code == 403
    assert httpx.get(d.url + "?token=wrong", timeout=10).status_code == 403
    r = httpx.get(d.login_url, timeout=10)
    assert r.status_code == 200 and "lightweight-charts" in r.text
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    js = httpx.get(d.url + "static/vendor/lightweight-charts.standalone.production.js", timeout=10)
    assert js.status_code == 200 and "createSeriesMarkers" in js.text
    assert httpx.get(d.url + "static/../server.py", timeout=10).status_code == 404

    async def run() -> dict:
        with pytest.raises(InvalidStatus):  # no cookie, no token
            async with connect(d.url.replace("http", "ws") + "ws"):
                pass
        with pytest.raises(InvalidStatus):  # a foreign page cannot use the cookie
            async with connect(d.url.replace("http", "ws") + "ws", additional_headers={
                    "Cookie": f"aitrados_dashboard={d.token}", "Origin": "http://evil.example"}):
                pass
        async with connect(d.url.replace("http", "ws") + "ws",
                           additional_headers={"Cookie": f"aitrados_dashboard={d.token}"}) as ws:
            first = await frames_until(ws, lambda m: True)
            rt.start_replay()
            later = await frames_until(ws, lambda m: m["clock"].get("ended") and m["fills"] >= 2 and "SMA5" in str(
                m["status"].get("strategies")))  # a status poll after the strategy warmed up
            return {"first": first, "later": later}

    out = asyncio.run(run())
    key = f"{SYM} 1M"
    assert out["later"]["candles"][key] > out["first"]["candles"].get(key, 0)
    st = out["later"]["status"]["strategies"]["sma_cross"]
    assert set(st["indicators"]) == {"sma5", "sma20"} and "SMA5" in st["reason"]
    assert d.counters["frames"] > 0


def run_replay(rt: Runtime) -> None:
    with joined_subscriber(rt.mw, ["replay.end"]) as sub:
        rt.start_replay()
        assert sub.recv(timeout=60) is not None
    assert rt.wait_replay(60)


def test_kill_switch_from_the_stream_refuses_the_next_order(rt: Runtime) -> None:
    d = rt.dashboard
    run_replay(rt)  # the engine has a clock and prices: an order would be accepted

    async def run() -> list:
        async with connect(d.url.replace("http", "ws") + "ws",
                           additional_headers={"Cookie": f"aitrados_dashboard={d.token}"}) as ws:
            await ws.send("not json")
            await ws.send(json.dumps({"op": "explode"}))
            await ws.send(json.dumps({"op": "trip", "reason": "test trip"}))
            m = await frames_until(ws, lambda m: len(m.get("answers", [])) >= 3, timeout=30)
            return m["answers"]

    answers = asyncio.run(run())
    assert [a["ok"] for a in answers] == [False, False, True]
    assert "unknown command" in answers[1]["error"]
    assert answers[2]["risk"]["kill_switch"] is True
    assert submit_one(rt)["payload"]["status"] == "rejected"
    m = metrics(d.url)
    assert m["aitrados_kill_switch_tripped"][0].value == 1.0


def test_metrics_parse_and_count_the_run(rt: Runtime) -> None:
    d = rt.dashboard
    run_replay(rt)
    deadline = time.monotonic() + 30
    while True:  # a later status poll after the end carries the final counts; polls lag under load
        m = metrics(d.url)
        fills = m.get("aitrados_fills", [])
        msgs = {s.labels["prefix"]: s.value for s in m.get("aitrados_pubsub_messages", []) if s.name.endswith("_total")}
        if (fills and fills[0].value >= 2 and m.get("aitrados_equity") and d.state.clock.get("ended")
                and msgs.get("ohlc", 0) >= 720 and msgs.get("fill", 0) >= 2):
            break
        assert time.monotonic() < deadline, (m.keys(), msgs)
        time.sleep(0.2)
    final = rt.trading.engine.broker.equity()  # the page's equity, rebuilt from fills and closes on the bus
    assert d.state.equity_now() == pytest.approx(final, rel=1e-9)
    assert d.state.equity[-1]["equity"] == pytest.approx(final, rel=1e-9) and len(d.state.equity) >= 700
    req = {s.labels["service"]: s.value for s in m["aitrados_rpc_service_requests"] if s.name.endswith("_total")}
    assert req["trading"] > 0 and m["aitrados_rpc_requests"][0].value > req["trading"]  # middleware calls too
    probe = [s for s in m["aitrados_rpc_probe_seconds"] if s.name.endswith("_count") and s.labels["service"] == "trading"]
    assert probe and probe[0].value > 0
    lat = {(s.name, s.labels.get("le")): s.value for s in m["aitrados_rpc_latency_seconds"]
           if s.labels["service"] == "trading"}  # every call the router routed, not only the dashboard's
    assert lat[("aitrados_rpc_latency_seconds_count", None)] > 0
    assert lat[("aitrados_rpc_latency_seconds_bucket", "+Inf")] == lat[("aitrados_rpc_latency_seconds_count", None)]
    assert m["aitrados_kill_switch_tripped"][0].value == 0.0
    assert {s.labels["status"] for s in m["aitrados_orders"]} >= {"accepted", "filled"}
    page = rt.report_paths["html"].read_text(encoding="utf-8")
    assert 'id="report-data"' in page and "<script src=" not in page  # self-contained: nothing to fetch


def test_beyond_loopback_without_a_token_is_refused() -> None:
    with pytest.raises(ValueError, match="without a token"):
        DashboardServer("inproc://x", "inproc://y", host="0.0.0.0", token="")
    DashboardServer("inproc://x", "inproc://y", host="::1", token="")  # loopback may go without
