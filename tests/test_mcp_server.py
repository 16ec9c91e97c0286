"""`aitrados mcp` in its own process, driven by the official MCP SDK client over stdio and HTTP,
against a real middleware (routers, replay server, market-data hub, trading service)."""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from aitrados.runtime import Runtime
from aitrados.trading.strategy import Strategy

from conftest import PYTHON, bus_settings, joined_subscriber

mcp = pytest.importorskip("mcp")
from mcp.client import ClientSession  # noqa: E402
from mcp.client.stdio import StdioServerParameters, stdio_client  # noqa: E402

pytestmark = pytest.mark.timeout(900)

READ_TOOLS = {"ohlc_history", "ohlc_latest", "chart_window", "multi_timeframe_snapshot", "indicators", "news_latest",
              "news_search", "economic_calendar", "holidays", "trading_session", "symbol_reference", "account",
              "positions", "orders", "risk_state", "run_backtest"}
SPX = "STOCK:US:SPX"
BTC = "CRYPTO:GLOBAL:BTCUSD"


class Watcher(Strategy):
    """Trades nothing: makes the middleware stream BTC bars (the risk engine refuses symbols it has no price for)."""

    name = "watcher"
    symbols = (BTC,)
    intervals = ("1M",)


@pytest.fixture(scope="module")
def runtime() -> Iterator[Runtime]:
    """A serving middleware with the replay server: no strategy, risk limit of 5 units per symbol."""
    d = tempfile.mkdtemp(prefix="at-", dir="/tmp")
    s = bus_settings(d)
    md = s.marketdata
    md.provider = "replay"
    md.replay_symbols = [BTC]
    md.replay_days = 0.1
    md.replay_history_days = 0.5
    s.trading.risk.max_position = 5.0
    s.trading.report_dir = str(Path(d) / "report")
    rt = Runtime(s, plugins=[], strategies=[Watcher()], exit_at_end=False, start_clock=False).start()
    with joined_subscriber(rt.mw, ["replay.end"]) as sub:  # the engine has seen BTC prices (orders need one)
        rt.start_replay()
        assert sub.recv(timeout=120) is not None, "the replay did not end"
    yield rt
    rt.stop()
    shutil.rmtree(d, ignore_errors=True)


def server_env(rt: Runtime, **extra: str) -> dict[str, str]:
    """Only what the MCP server process needs: the test middleware's bus, no caller AITRADOS_* settings."""
    b = rt.settings.bus
    env = {k: v for k, v in os.environ.items() if not k.startswith("AITRADOS_")}
    env.update({"AITRADOS_BUS__NAME": b.name, "AITRADOS_BUS__IPC_DIR": b.ipc_dir,
                "AITRADOS_CONFIG": "/nonexistent/aitrados.toml", "AITRADOS_MARKETDATA__PROVIDER": "replay", **extra})
    return env


def params(rt: Runtime, *args: str) -> StdioServerParameters:
    return StdioServerParameters(command=PYTHON, args=["-m", "aitrados", "mcp", "--embedded", "never", *args],
                                 env=server_env(rt))


def run(coro_fn: Any, timeout: float = 120.0) -> Any:
    async def main() -> Any:
        with anyio.fail_after(timeout):
            return await coro_fn()
    return anyio.run(main)


def structured(result: Any) -> Any:
    assert not result.is_error, result.content
    return result.structured_content


READ_CALLS: dict[str, dict[str, Any]] = {
    "ohlc_history": {"full_symbol": SPX, "interval": "DAY", "from_date": "2018-01-01T00:00:00Z",
                     "to_date": "2018-03-01T00:00:00Z", "limit": 100},
    "ohlc_latest": {"full_symbol": BTC, "interval": "1M", "limit": 5},
    "chart_window": {"full_symbol": BTC, "interval": "5M", "size": 10},
    "multi_timeframe_snapshot": {"full_symbol": BTC, "intervals": ["1M", "5M", "15M"]},
    "indicators": {"full_symbol": BTC, "interval": "1M", "size": 60, "sma": [5, 20], "ema": [10], "rsi": 14,
                   "bollinger": 20, "atr": 14},
    "news_latest": {"limit": 3},
    "news_search": {"from_date": "2018-01-01T00:00:00Z", "to_date": "2019-01-01T00:00:00Z", "query": ""},
    "economic_calendar": {"country": "US", "impact": "high", "from_date": "2018-01-01T00:00:00Z",
                          "to_date": "2019-01-01T00:00:00Z"},
    "holidays": {"full_symbol": "stock:US:*", "from_date": "2018-01-01T00:00:00Z", "to_date": "2019-01-01T00:00:00Z"},
    "trading_session": {"full_symbol": SPX},
    "symbol_reference": {"full_symbol": SPX},
    "account": {}, "positions": {}, "orders": {}, "risk_state": {},
}


def test_stdio_lists_read_only_tools_calls_each_and_refuses_orders(runtime: Runtime) -> None:
    async def go() -> dict[str, Any]:
        async with stdio_client(params(runtime)) as (r, w), ClientSession(r, w) as session:
            await session.initialize()
            tools = {t.name: t for t in (await session.list_tools()).tools}
            out: dict[str, Any] = {"tools": tools}
            for name, args in READ_CALLS.items():
                out[name] = structured(await session.call_tool(name, args))
            out["refused"] = await session.call_tool("submit_order", {"full_symbol": BTC, "side": "buy",
                                                                      "quantity": 1})
            out["bad_symbol"] = await session.call_tool("ohlc_latest", {"full_symbol": "SPX", "interval": "DAY"})
            out["bad_interval"] = await session.call_tool("chart_window", {"full_symbol": SPX, "interval": "2H"})
            out["bad_range"] = await session.call_tool("ohlc_history", {**READ_CALLS["ohlc_history"],
                                                                        "to_date": "2017-01-01T00:00:00Z"})
            res = await session.list_resources()
            out["resources"] = {str(x.uri) for x in res.resources}
            out["report"] = await session.read_resource("aitrados://report")
            out["strategies"] = await session.read_resource("aitrados://strategies")
            return out

    out = run(go)
    assert set(out["tools"]) == READ_TOOLS, "read-only by default: no order tool"
    assert all(t.output_schema for t in out["tools"].values()), "every tool has a structured output"
    hist = out["ohlc_history"]
    assert hist["full_symbol"] == SPX and 30 < hist["count"] <= 100
    assert all("2018-01-01" <= b["datetime"][:10] < "2018-03-02" for b in hist["bars"])
    assert out["ohlc_latest"]["count"] == 5
    assert out["chart_window"]["interval"] == "5M" and 1 <= out["chart_window"]["count"] <= 10
    snap = out["multi_timeframe_snapshot"]["bars"]
    assert set(snap) == {"1M", "5M", "15M"} and snap["1M"]["full_symbol"] == BTC
    ind = out["indicators"]
    assert ind["bars"] == 60 and {"sma_5", "sma_20", "ema_10", "rsi_14", "bb_20_mid", "atr_14"} <= set(ind["values"])
    assert 0 <= ind["values"]["rsi_14"] <= 100 and ind["values"]["sma_20"] > 0
    assert out["news_latest"]["count"] >= 1
    assert out["news_search"]["count"] >= 1
    events = out["economic_calendar"]["items"]
    assert events and all(e["impact"] == "high" and e["country_iso_code"] == "US" for e in events)
    assert out["holidays"]["count"] >= 1
    assert out["trading_session"]["timezone"] == "America/New_York"
    assert out["symbol_reference"]
    assert "equity" in out["account"] and out["positions"]["count"] == 0
    assert out["risk_state"]
    assert out["refused"].is_error and "submit_order" in out["refused"].content[0].text
    assert out["bad_symbol"].is_error and "full_symbol" in out["bad_symbol"].content[0].text
    assert out["bad_interval"].is_error and "interval" in out["bad_interval"].content[0].text
    assert out["bad_range"].is_error and "before from_date" in out["bad_range"].content[0].text
    assert out["resources"] == {"aitrados://report", "aitrados://strategies"}
    assert "metrics" in out["report"].contents[0].text
    assert "trading" in out["strategies"].contents[0].text


def test_stdio_order_tools_go_through_the_risk_engine_and_are_published(runtime: Runtime) -> None:
    sub = runtime.mw.subscriber(["mcp.order."])
    got: queue.Queue[Any] = queue.Queue()
    stop = threading.Event()

    def pump() -> None:
        while not stop.is_set():
            m = sub.recv(timeout=0.2)
            if m is not None:
                got.put(m)

    t = threading.Thread(target=pump, daemon=True)
    t.start()

    async def go() -> dict[str, Any]:
        async with stdio_client(params(runtime, "--allow-trading", "--identity", "agent_x")) as (r, w), \
                ClientSession(r, w) as session:
            await session.initialize()
            names = {t.name for t in (await session.list_tools()).tools}
            big = await session.call_tool("submit_order", {"full_symbol": BTC, "side": "buy", "quantity": 6})
            bad = await session.call_tool("submit_order", {"full_symbol": BTC, "side": "buy", "quantity": -1})
            lim = await session.call_tool("submit_order", {"full_symbol": BTC, "side": "buy", "quantity": 1,
                                                           "order_type": "limit"})
            ok = await session.call_tool("submit_order", {"full_symbol": BTC, "side": "buy", "quantity": 1,
                                                          "order_type": "limit", "limit_price": 1.0})
            return {"names": names, "big": big, "bad": bad, "lim": lim, "ok": ok}

    try:
        out = run(go)
        assert {"submit_order", "cancel_order"} <= out["names"]
        big = structured(out["big"])
        assert big["strategy"] == "agent_x" and not big["accepted"]
        rejected = [e for e in big["events"] if e["topic"].startswith("order.rejected")]
        assert rejected and rejected[0]["payload"]["rule"] == "max_position", \
            rejected[0]["payload"]["reason"]
        assert out["bad"].is_error and "quantity" in out["bad"].content[0].text
        assert out["lim"].is_error and "limit_price" in out["lim"].content[0].text
        ok = structured(out["ok"])
        assert ok["accepted"], ok
        deadline = time.monotonic() + 20
        seen: list[Any] = []
        while len(seen) < 2 and time.monotonic() < deadline:
            try:
                seen.append(got.get(timeout=0.5))
            except queue.Empty:
                pass
        assert [m.topic for m in seen] == ["mcp.order.agent_x"] * 2
        assert seen[0].data["strategy"] == "agent_x" and seen[0].data["request"]["quantity"] == 6
        orders = runtime.trading.engine.broker.orders()
        mine = [o for o in orders if getattr(o, "strategy", None) == "agent_x"]
        assert len(mine) == 2, orders
    finally:
        stop.set()
        t.join(5)
        sub.close()


def _reader(stream: Any, lines: queue.Queue[str]) -> None:
    for line in iter(stream.readline, ""):
        lines.put(line)


def test_http_needs_the_token_and_serves_the_sdk_client(runtime: Runtime, tmp_path: Path) -> None:
    token = "test-token-" + os.urandom(6).hex()
    proc = subprocess.Popen([PYTHON, "-m", "aitrados", "mcp", "--embedded", "never", "--http", "--port", "0"],
                            env=server_env(runtime, AITRADOS_MCP_TOKEN=token), cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_reader, args=(proc.stderr, lines), daemon=True).start()
    try:
        url, deadline, log = None, time.monotonic() + 60, []
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                continue
            log.append(line)
            if "streamable HTTP at " in line:
                url = line.rsplit(" ", 1)[1].strip()
        assert url and url.startswith("http://127.0.0.1:"), "".join(log)
        assert token not in "".join(log), "the token is never logged"
        denied = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"}, timeout=10)
        assert denied.status_code == 401
        wrong = httpx.post(url, json={}, headers={"Authorization": "Bearer nope"}, timeout=10)
        assert wrong.status_code == 401

        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        async def go() -> Any:
            async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"},
                                          timeout=httpx2.Timeout(30, read=60)) as http, \
                    streamable_http_client(url, http_client=http) as (r, w), ClientSession(r, w) as session:
                await session.initialize()
                names = {t.name for t in (await session.list_tools()).tools}
                sess = structured(await session.call_tool("trading_session", {"full_symbol": BTC}))
                win = structured(await session.call_tool("chart_window", {"full_symbol": SPX, "interval": "WEEK",
                                                                          "size": 4}))
                return names, sess, win

        names, sess, win = run(go)
        assert names == READ_TOOLS
        assert sess["is_24h"] and sess["weekdays"] == list(range(7))
        assert win["interval"] == "WEEK" and 1 <= win["count"] <= 4
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_stdio_run_backtest_returns_the_main_jobs_metrics(runtime: Runtime) -> None:
    async def go() -> tuple:
        async with stdio_client(params(runtime)) as (r, w), ClientSession(r, w) as session:
            await session.initialize()
            ok = await session.call_tool("run_backtest", {"plugins": ["sma_cross"], "timeout_seconds": 400},
                                         read_timeout_seconds=420)
            limited = await session.call_tool("run_backtest", {"plugins": ["sma_cross"], "timeout_seconds": 400,
                                                               "trading": {"risk": {"max_position": 0.001}}},
                                              read_timeout_seconds=420)
            bad = await session.call_tool("run_backtest", {"plugins": ["no_such_plugin"]})
            return ok, limited, bad

    ok, limited, bad = run(go, timeout=900)
    m = structured(ok)
    assert m["exit_code"] == 0 and m["metrics"]["trades"] > 10, m
    assert "Sharpe" in m["summary"] or "sharpe" in m["summary"].lower()
    lim = structured(limited)["metrics"]
    assert lim["trades"] == 0 < m["metrics"]["trades"], "the settings given reach the backtest's risk engine"
    assert bad.is_error and "unknown plugin" in bad.content[0].text and "sma_cross" in bad.content[0].text


class ToolCallingModel:
    """A loopback OpenAI-compatible chat server: first asks for chart_window, then answers from its result."""

    def __init__(self) -> None:
        import json
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.requests: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                outer.requests.append(body)
                tool_msgs = [m for m in body["messages"] if m["role"] == "tool"]
                if not tool_msgs:
                    msg = {"role": "assistant", "content": None, "tool_calls": [{
                        "id": "call_1", "type": "function", "function": {
                            "name": "chart_window",
                            "arguments": json.dumps({"full_symbol": SPX, "interval": "WEEK", "size": 4,
                                                   "closed_only": True})}}]}
                else:
                    bars = json.loads(tool_msgs[-1]["content"])["bars"]
                    msg = {"role": "assistant", "content": f"The last weekly close was {bars[-1]['close']}."}
                payload = json.dumps({"choices": [{"index": 0, "message": msg, "finish_reason": "stop"}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def test_llm_agent_example_uses_the_mcp_tools_end_to_end(runtime: Runtime, tmp_path: Path) -> None:
    model = ToolCallingModel()
    try:
        r = subprocess.run([PYTHON, str(Path(__file__).resolve().parent.parent / "examples" / "mcp_agent.py"),
                            "--base-url", model.base_url, "--model", "fake", "--mcp-arg=--embedded",
                            "--mcp-arg=never", "What was the last weekly close of the S&P 500?"],
                           env=server_env(runtime), cwd=tmp_path, capture_output=True, text=True, timeout=120)
    finally:
        model.close()
    assert r.returncode == 0, r.stderr[-3000:]
    assert "tools called: chart_window" in r.stdout
    first = model.requests[0]
    assert {t["function"]["name"] for t in first["tools"]} == READ_TOOLS, "the model is offered the MCP tools"
    from aitrados.bus import RPCClient

    with RPCClient(runtime.mw.endpoints().rpc_frontend, bus=runtime.settings.bus, context=runtime.mw.context) as c:
        last = c.call("chart", "window", full_symbol=SPX, interval="WEEK", size=4, closed_only=True)[-1]
    close = last["close"] if isinstance(last, dict) else last.close
    assert f"answer: The last weekly close was {close}." in r.stdout
