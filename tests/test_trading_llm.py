"""OpenAI-compatible chat client and the approve/veto gate against a real HTTP server on loopback."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from loguru import logger

from aitrados.marketdata.loader import bundled_bar_files, load_bars
from aitrados.marketdata.models import NewsItem
from aitrados.trading.broker import PaperBroker
from aitrados.trading.engine import TradingEngine
from aitrados.trading.llm import (
    ChatClient,
    Gate,
    LLMConnectionError,
    LLMHTTPError,
    LLMReplyError,
    LLMSettings,
    LLMTimeoutError,
    parse_decision,
)
from aitrados_strategies.llm_gated import LlmGated
from aitrados_strategies.sma_cross import SmaCross

KEY = "sk-test-0123456789-secret"


class FakeOpenAI:
    """A tiny OpenAI-compatible server: records requests, answers as ``mode`` says."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.mode = "ok"
        self.content = '{"decision": "approve", "reason": "trend is fine"}'
        self.delay = 0.0
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.requests.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
                if outer.mode == "slow":
                    outer.release.wait(timeout=outer.delay)
                if outer.mode == "status":
                    payload, status = b'{"error": {"message": "invalid api key"}}', 401
                elif outer.mode == "garbage":
                    payload, status = b"<html>not json</html>", 200
                elif outer.mode == "shape":
                    payload, status = b'{"choices": []}', 200
                else:
                    payload, status = json.dumps({
                        "id": "cmpl-1", "object": "chat.completion", "model": "test-model",
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": outer.content}}],
                        "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19},
                    }).encode(), 200
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout tests)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"


@pytest.fixture()
def server() -> Iterator[FakeOpenAI]:
    s = FakeOpenAI()
    s.thread.start()
    yield s
    s.release.set()
    s.server.shutdown()
    s.server.server_close()
    s.thread.join(timeout=5)


def client(server: FakeOpenAI, **kw: Any) -> ChatClient:
    return ChatClient(LLMSettings(base_url=server.base_url, model="test-model", **kw))


@pytest.mark.timeout(30)
def test_request_shape_and_reply_parsing(server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_LLM_KEY", KEY)
    c = client(server, api_key_env="MY_LLM_KEY", temperature=0.0, max_tokens=50)
    reply = c.chat([{"role": "user", "content": "hello"}], top_p=0.5)
    req = server.requests[0]
    assert req["path"] == "/v1/chat/completions"
    assert req["headers"]["Authorization"] == f"Bearer {KEY}"
    assert req["headers"]["Content-Type"] == "application/json"
    assert req["body"] == {"model": "test-model", "messages": [{"role": "user", "content": "hello"}],
                           "temperature": 0.0, "max_tokens": 50, "stream": False, "top_p": 0.5}
    assert reply.content == server.content and reply.model == "test-model"
    assert reply.finish_reason == "stop" and (reply.prompt_tokens, reply.completion_tokens) == (12, 7)
    assert KEY not in repr(c) and "key=set" in repr(c)
    c.close()


@pytest.mark.timeout(30)
def test_no_key_sends_no_authorization(server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    client(server).chat([{"role": "user", "content": "x"}])
    assert "Authorization" not in server.requests[0]["headers"]


@pytest.mark.timeout(30)
def test_async_chat(server: FakeOpenAI) -> None:
    c = client(server, api_key=KEY)
    reply = asyncio.run(c.achat([{"role": "user", "content": "hi"}]))
    assert reply.content == server.content
    assert server.requests[0]["headers"]["Authorization"] == f"Bearer {KEY}"


@pytest.mark.timeout(30)
def test_errors_are_clear_and_never_show_the_key(server: FakeOpenAI) -> None:
    logs: list[str] = []
    sink = logger.add(logs.append, level="DEBUG")
    try:
        c = client(server, api_key=KEY, timeout=30)  # answers must not race a short timeout on a loaded machine
        msgs = [{"role": "user", "content": "x"}]
        server.mode = "status"
        with pytest.raises(LLMHTTPError, match="HTTP 401.*check the API key") as e:
            c.chat(msgs)
        assert e.value.status_code == 401 and KEY not in str(e.value)
        server.mode = "garbage"
        with pytest.raises(LLMReplyError, match="non-JSON"):
            c.chat(msgs)
        server.mode = "shape"
        with pytest.raises(LLMReplyError, match="choices"):
            c.chat(msgs)
        server.mode, server.delay = "slow", 5.0
        impatient = client(server, api_key=KEY, timeout=0.3)
        with pytest.raises(LLMTimeoutError, match="did not answer within 0.3 s"):
            impatient.chat(msgs)
        with pytest.raises(ValueError, match="messages is empty"):
            c.chat([])
        # a gate over the failing client falls back and logs why, without the key
        assert Gate(impatient, fallback=False).decide("BUY").source == "fallback"
    finally:
        logger.remove(sink)
    assert logs and not any(KEY in line for line in logs)


@pytest.mark.timeout(30)
def test_unreachable_server() -> None:
    import socket

    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = ChatClient(LLMSettings(base_url=f"http://127.0.0.1:{port}/v1", timeout=2))
    with pytest.raises(LLMConnectionError, match="cannot reach chat server"):
        c.chat([{"role": "user", "content": "x"}])


def test_parse_decision() -> None:
    assert parse_decision('{"decision": "approve", "reason": "ok"}') == (True, "ok")
    assert parse_decision('Sure. ```json\n{"decision": "VETO", "reason": "news"}\n```') == (False, "news")
    assert parse_decision("I approve this trade.")[0] is True
    assert parse_decision("Veto: too risky")[0] is False
    assert parse_decision("maybe later") is None


@pytest.mark.timeout(30)
def test_gate_uses_model_answer_and_sends_context(server: FakeOpenAI) -> None:
    bars = load_bars(bundled_bar_files()[("STOCK:US:SPX", "DAY")]).bars[:3]
    news = [NewsItem(bars[-1].close_datetime, "Stocks rally on earnings")]
    gate = Gate(client(server))
    d = gate.decide("BUY 10 STOCK:US:SPX", bars, news)
    assert d.approved and d.source == "model" and d.reason == "trend is fine"
    prompt = server.requests[0]["body"]["messages"][-1]["content"]
    assert "BUY 10 STOCK:US:SPX" in prompt and "Stocks rally on earnings" in prompt
    assert f"C={bars[0].close:.2f}" in prompt
    server.content = '{"decision": "veto", "reason": "overbought"}'
    assert gate.decide("BUY").approved is False
    server.content = "I cannot say"
    d = gate.decide("BUY")
    assert d.source == "fallback" and d.approved is False and "unclear" in d.reason


@pytest.mark.timeout(30)
def test_gate_falls_back_when_the_model_is_slow(server: FakeOpenAI) -> None:
    server.mode, server.delay = "slow", 10.0
    gate = Gate(client(server, timeout=10), fallback=True, timeout=0.3)  # caller waits 0.3 s, not 10
    d = gate.decide("BUY")
    assert d.approved is True and d.source == "fallback" and "no answer within 0.3 s" in d.reason
    d2 = asyncio.run(gate.adecide("BUY"))
    assert d2.source == "fallback" and gate.fallbacks == 2
    server.release.set()


@pytest.mark.timeout(60)
def test_llm_gated_strategy(server: FakeOpenAI) -> None:
    bars = load_bars(bundled_bar_files()[("STOCK:US:SPX", "DAY")]).bars[:300]
    plain = TradingEngine([SmaCross(fast=10, slow=30)], PaperBroker())
    plain.run(bars)
    entries = [o for o in plain.broker.orders() if o.tag == "entry"]

    approving = LlmGated(fast=10, slow=30, model=client(server))
    e1 = TradingEngine([approving], PaperBroker())
    e1.handle_news(NewsItem(bars[40].close_datetime, "Sample headline", full_symbol="STOCK:US:SPX"))
    e1.run(bars)
    # the model approves every entry: same fills as the ungated strategy, one request per entry signal
    assert [f.datetime for f in e1.broker.fills()] == [f.datetime for f in plain.broker.fills()]
    assert len(server.requests) == len(entries) and all(d.source == "model" for _, _, d in approving.decisions)

    server.content = '{"decision": "veto", "reason": "no"}'
    vetoing = LlmGated(fast=10, slow=30, model=client(server))
    e2 = TradingEngine([vetoing], PaperBroker())
    e2.run(bars)
    assert e2.broker.fills() == [] and len(vetoing.decisions) == len(entries)  # asked once per signal, not per bar

    server.mode, server.delay = "slow", 10.0
    slow = LlmGated(fast=10, slow=30, model=client(server), timeout=0.2)  # stated fallback: veto
    e3 = TradingEngine([slow], PaperBroker())
    e3.run(bars)
    assert e3.broker.fills() == [] and slow.decisions and all(d.source == "fallback" for _, _, d in slow.decisions)
    server.release.set()


@pytest.mark.timeout(30)
def test_gate_accepts_registered_model_shapes(server: FakeOpenAI) -> None:
    prompts: list[str] = []

    def plain(prompt: str) -> str:
        prompts.append(prompt)
        return "VETO - the news is bad"

    async def coro(prompt: str) -> str:
        return '{"decision": "approve", "reason": "async ok"}'

    assert Gate(plain).decide("BUY 1 X").approved is False and "BUY 1 X" in prompts[0]
    assert Gate(coro).decide("BUY").reason == "async ok"
    assert asyncio.run(Gate(coro).adecide("BUY")).approved is True
    # a ChatClient fits the register_llm_models shape too: complete(prompt) -> text
    c = client(server)
    assert c.complete("hi") == server.content
    assert Gate(c).decide("BUY").source == "model"
    d = Gate(object()).decide("BUY")  # not a model at all: fallback, with the reason
    assert d.source == "fallback" and "neither callable" in d.reason


@pytest.mark.timeout(30)
def test_a_slow_model_does_not_stall_the_event_loop(server: FakeOpenAI) -> None:
    # the host runs strategy callbacks off its loop (asyncio.to_thread); the loop keeps serving
    # other work while the gated strategy waits for the model, and the strategy falls back
    server.mode, server.delay = "slow", 10.0
    bars = load_bars(bundled_bar_files()[("STOCK:US:SPX", "DAY")]).bars[:60]
    strat = LlmGated(fast=10, slow=30, model=client(server), timeout=0.5)
    engine = TradingEngine([strat], PaperBroker())

    async def main() -> tuple[int, int]:
        ticks = 0
        done = asyncio.Event()

        async def heartbeat() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        hb = asyncio.create_task(heartbeat())
        during_model_call = 0
        for b in bars:
            before = len(strat.decisions)
            start_ticks = ticks
            await asyncio.to_thread(engine.handle_bar, b)
            if len(strat.decisions) > before:
                during_model_call = max(during_model_call, ticks - start_ticks)
        done.set()
        await hb
        return ticks, during_model_call

    ticks, during = asyncio.run(main())
    assert strat.decisions and all(d.source == "fallback" for _, _, d in strat.decisions)
    assert during >= 2  # the heartbeat ran while a model call was pending
    server.release.set()
