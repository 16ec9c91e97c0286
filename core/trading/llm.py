"""An OpenAI-compatible chat client on httpx, and an approve/veto gate with a fallback.

The client speaks ``POST {base_url}/chat/completions`` (``base_url`` ends in ``/v1``, as
OpenAI, Ollama, llama.cpp's server, vLLM and LM Studio expect), sync and async. The key
comes from the settings or from the environment variable ``api_key_env``; it is sent as
``Authorization: Bearer <key>`` and never logged or shown in errors or reprs.

:class:`Gate` asks a model to approve or veto a trading signal given recent bars and
news. It never stalls its caller: the call runs in a worker thread (or as an awaitable
with :meth:`Gate.adecide`) with a deadline, and whenever the model is unreachable, slow,
erroring or unclear, the gate returns its stated ``fallback`` (default: veto).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

import httpx
import msgspec
from loguru import logger

from ..errors import AitradosError
from .settings import LLMSettings

__all__ = [
    "LLMSettings",
    "ChatReply",
    "ChatClient",
    "LLMError",
    "LLMTimeoutError",
    "LLMConnectionError",
    "LLMHTTPError",
    "LLMReplyError",
    "GateDecision",
    "Gate",
    "parse_decision",
    "build_gate_messages",
]

Message = dict[str, str]


class ChatReply(msgspec.Struct, frozen=True):
    """A parsed chat completion: the first choice's text and the server's metadata."""

    content: str
    model: str = ""
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class LLMError(AitradosError, RuntimeError):
    """Base of the chat client's errors; the message says what to check."""


class LLMTimeoutError(LLMError):
    """The server did not answer within the timeout."""


class LLMConnectionError(LLMError):
    """The server could not be reached."""


class LLMHTTPError(LLMError):
    """The server answered with an HTTP error status."""

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


class LLMReplyError(LLMError):
    """The server's reply was not a chat completion."""


class ChatClient:
    """OpenAI-compatible chat completions over httpx, sync (:meth:`chat`) and async (:meth:`achat`)."""

    def __init__(self, settings: LLMSettings | None = None) -> None:
        self.settings = settings or LLMSettings()
        self._url = self.settings.base_url.rstrip("/") + "/chat/completions"
        self._sync: httpx.Client | None = None

    def __repr__(self) -> str:
        key = "set" if self.settings.key() else "none"
        return f"ChatClient(url={self._url!r}, model={self.settings.model!r}, key={key})"

    @property
    def url(self) -> str:
        """The full chat-completions URL."""
        return self._url

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = self.settings.key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _body(self, messages: Sequence[Message], params: dict[str, Any]) -> dict[str, Any]:
        if not messages:
            raise ValueError("chat: messages is empty; pass [{'role': 'user', 'content': '...'}]")
        for m in messages:
            if not isinstance(m, dict) or "role" not in m or "content" not in m:
                raise ValueError(f"chat: each message needs 'role' and 'content', got {m!r}")
        body: dict[str, Any] = {
            "model": self.settings.model,
            "messages": list(messages),
            "temperature": self.settings.temperature,
            "max_tokens": self.settings.max_tokens,
            "stream": False,
        }
        body.update(params)
        return body

    def _where(self) -> str:
        return f"{self._url} (model {self.settings.model!r})"

    def _parse(self, response: httpx.Response) -> ChatReply:
        if response.status_code >= 400:
            excerpt = response.text[:300]
            hint = " check the API key (settings api_key or env " + self.settings.api_key_env + ")" if response.status_code in (401, 403) else ""
            raise LLMHTTPError(f"chat server {self._where()} answered HTTP {response.status_code}: {excerpt}{hint}", response.status_code)
        try:
            data = response.json()
        except ValueError:
            raise LLMReplyError(f"chat server {self._where()} sent non-JSON: {response.text[:200]!r}") from None
        try:
            choice = data["choices"][0]
            content = choice["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise LLMReplyError(
                f"chat server {self._where()} reply has no choices[0].message.content: {str(data)[:200]}"
            ) from None
        if not isinstance(content, str):
            raise LLMReplyError(f"chat server {self._where()} reply content is {type(content).__name__}, not text")
        usage = data.get("usage") or {}
        return ChatReply(
            content=content,
            model=str(data.get("model", "")),
            finish_reason=choice.get("finish_reason"),
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
        )

    def _wrap(self, exc: Exception) -> LLMError:
        if isinstance(exc, httpx.TimeoutException):
            return LLMTimeoutError(
                f"chat server {self._where()} did not answer within {self.settings.timeout:g} s; "
                "raise the llm timeout setting or check the server"
            )
        if isinstance(exc, httpx.TransportError):
            return LLMConnectionError(
                f"cannot reach chat server {self._where()}: {type(exc).__name__}; check base_url and that the server runs"
            )
        return LLMError(f"chat request to {self._where()} failed: {type(exc).__name__}")

    def chat(self, messages: Sequence[Message], **params: Any) -> ChatReply:
        """Send ``messages`` and return the parsed reply (extra ``params`` go into the JSON body).

        :raises LLMError: a subclass saying what failed (timeout, connection, HTTP status, bad reply).
        """
        body = self._body(messages, params)
        if self._sync is None:
            self._sync = httpx.Client(timeout=self.settings.timeout)
        try:
            response = self._sync.post(self._url, json=body, headers=self._headers())
        except httpx.HTTPError as exc:
            raise self._wrap(exc) from None
        return self._parse(response)

    async def achat(self, messages: Sequence[Message], **params: Any) -> ChatReply:
        """Async :meth:`chat` (a fresh ``httpx.AsyncClient`` per call, so any event loop can use it)."""
        body = self._body(messages, params)
        try:
            async with httpx.AsyncClient(timeout=self.settings.timeout) as client:
                response = await client.post(self._url, json=body, headers=self._headers())
        except httpx.HTTPError as exc:
            raise self._wrap(exc) from None
        return self._parse(response)

    def complete(self, prompt: str) -> str:
        """One user message in, the reply text out (the ``register_llm_models`` client shape)."""
        return self.chat([{"role": "user", "content": prompt}]).content

    def close(self) -> None:
        """Close the pooled sync connection."""
        if self._sync is not None:
            self._sync.close()
            self._sync = None


# --------------------------------------------------------------------------- gate

class GateDecision(msgspec.Struct, frozen=True):
    """The gate's verdict: ``approved``, whether it came from the ``model`` or the ``fallback``, and why."""

    approved: bool
    source: Literal["model", "fallback"]
    reason: str = ""


_DECISION_WORD = re.compile(r"\b(approve|approved|veto|vetoed|reject|rejected)\b", re.I)


def parse_decision(text: str) -> tuple[bool, str] | None:
    """Read a model's answer: JSON ``{"decision": "approve"|"veto", "reason": ...}`` or the first
    approve/veto word in plain text. Returns ``(approved, reason)`` or None when unclear."""
    stripped = text.strip()
    fenced = re.search(r"\{.*\}", stripped, re.S)
    if fenced:
        try:
            data = json.loads(fenced.group(0))
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("decision"), str):
            word = data["decision"].strip().lower()
            reason = str(data.get("reason", ""))
            if word in ("approve", "approved"):
                return True, reason
            if word in ("veto", "vetoed", "reject", "rejected"):
                return False, reason
    m = _DECISION_WORD.search(stripped)
    if m is None:
        return None
    return m.group(1).lower().startswith("approve"), stripped[:200]


def build_gate_messages(signal: str, bars: Iterable[Any], news: Iterable[Any] = ()) -> list[Message]:
    """The chat messages asking to approve or veto ``signal`` given recent bars and news titles."""
    bar_lines = [
        f"{b.datetime:%Y-%m-%d %H:%M} O={b.open:.2f} H={b.high:.2f} L={b.low:.2f} C={b.close:.2f} V={b.volume:g}"
        for b in bars
    ]
    news_lines = [f"{n.published_date:%Y-%m-%d %H:%M} {n.title}" for n in news]
    user = (
        f"Signal: {signal}\n\nRecent bars (oldest first):\n" + ("\n".join(bar_lines) or "(none)")
        + "\n\nRecent news:\n" + ("\n".join(news_lines) or "(none)")
        + '\n\nAnswer with JSON only: {"decision": "approve" or "veto", "reason": "<one sentence>"}'
    )
    return [
        {"role": "system", "content": "You are a cautious trading risk reviewer. Approve a signal only when the "
                                      "recent bars and news support it; otherwise veto."},
        {"role": "user", "content": user},
    ]


_EXECUTOR: concurrent.futures.ThreadPoolExecutor | None = None


def _executor() -> concurrent.futures.ThreadPoolExecutor:
    global _EXECUTOR
    if _EXECUTOR is None:
        _EXECUTOR = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="aitrados-llm")
    return _EXECUTOR


Chat = Callable[[str], Any]


def _prompt_text(messages: list[Message]) -> str:
    return "\n\n".join(m["content"] for m in messages)


class Gate:
    """Approve/veto helper: asks ``model`` with a deadline, falls back to ``fallback`` on any failure.

    ``model`` is a :class:`ChatClient` (sent system + user messages), or what a plugin registers
    through ``register_llm_models``: an object with a ``complete(prompt)`` method or a callable
    ``prompt -> text`` (sync or async), sent the same text as one prompt. ``timeout`` is the most the caller waits (default: the client's
    timeout, else 10 s); the HTTP call itself also has the client's own timeout.
    """

    def __init__(self, model: ChatClient | Chat, fallback: bool = False, timeout: float | None = None) -> None:
        self.model = model
        self.fallback = fallback
        if timeout is None:
            timeout = model.settings.timeout if isinstance(model, ChatClient) else 10.0
        self.timeout = float(timeout)
        self.calls = 0
        self.fallbacks = 0

    def _fallback(self, why: str) -> GateDecision:
        self.fallbacks += 1
        logger.warning("LLM gate fell back to {}: {}", "approve" if self.fallback else "veto", why)
        return GateDecision(self.fallback, "fallback", why)

    def _ask(self, messages: list[Message]) -> str:
        if isinstance(self.model, ChatClient):
            return self.model.chat(messages).content
        fn = getattr(self.model, "complete", None) or self.model
        if not callable(fn):
            raise TypeError(f"LLM model {self.model!r} is neither callable nor has a complete() method")
        out = fn(_prompt_text(messages))
        if asyncio.iscoroutine(out):
            out = asyncio.run(out)  # we are in a worker thread: no running loop here
        return out.content if isinstance(out, ChatReply) else str(out)

    def _verdict(self, text: str) -> GateDecision:
        parsed = parse_decision(text)
        if parsed is None:
            return self._fallback(f"unclear model answer: {text[:120]!r}")
        return GateDecision(parsed[0], "model", parsed[1])

    def decide(self, signal: str, bars: Iterable[Any] = (), news: Iterable[Any] = ()) -> GateDecision:
        """Ask the model about ``signal`` from a worker thread, waiting at most ``timeout`` seconds."""
        self.calls += 1
        messages = build_gate_messages(signal, bars, news)
        future = _executor().submit(self._ask, messages)
        try:
            text = future.result(timeout=self.timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            return self._fallback(f"no answer within {self.timeout:g} s")
        except Exception as exc:
            return self._fallback(f"{type(exc).__name__}: {exc}")
        return self._verdict(text)

    async def adecide(self, signal: str, bars: Iterable[Any] = (), news: Iterable[Any] = ()) -> GateDecision:
        """Async :meth:`decide`: awaits the model (in a thread for plain callables) with the deadline."""
        self.calls += 1
        messages = build_gate_messages(signal, bars, news)
        try:
            if isinstance(self.model, ChatClient):
                reply = await asyncio.wait_for(self.model.achat(messages), self.timeout)
                text = reply.content
            else:
                text = await asyncio.wait_for(asyncio.to_thread(self._ask, messages), self.timeout)
        except (asyncio.TimeoutError, TimeoutError):
            return self._fallback(f"no answer within {self.timeout:g} s")
        except Exception as exc:
            return self._fallback(f"{type(exc).__name__}: {exc}")
        return self._verdict(text)
