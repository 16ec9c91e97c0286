"""An LLM agent that answers a market question with the aitrados MCP tools.

It starts ``aitrados mcp`` over stdio (which reaches the running middleware, or embeds one with
the replay server), lists the tools, offers them to an OpenAI-compatible chat model as function
tools, runs every tool call the model makes through the MCP session, and prints the model's final
answer. Any server of that API works: a local one (Ollama, llama.cpp, vLLM) or a hosted one.

    python examples/mcp_agent.py --base-url http://127.0.0.1:11434/v1 --model llama3.2 \\
        "What did the S&P 500 do over the last four weeks of the data?"

The API key, if the server needs one, is read from OPENAI_API_KEY and never printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import anyio
import httpx
from mcp.client import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client


def openai_tools(tools: list[Any]) -> list[dict[str, Any]]:
    """MCP tool descriptions as OpenAI function tools (name, description, JSON-schema parameters)."""
    return [{"type": "function", "function": {"name": t.name, "description": t.description or "",
                                              "parameters": t.input_schema}} for t in tools]


async def ask(question: str, base_url: str, model: str, max_rounds: int = 6, mcp_args: list[str] | None = None,
              timeout: float = 60.0) -> tuple[str, list[str]]:
    """Run the agent loop; returns the final answer and the names of the tools it called."""
    server = StdioServerParameters(command=sys.executable, args=["-m", "aitrados", "mcp", *(mcp_args or [])],
                                   env=dict(os.environ))
    key = os.environ.get("OPENAI_API_KEY")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    called: list[str] = []
    async with stdio_client(server) as (r, w), ClientSession(r, w) as session, \
            httpx.AsyncClient(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout) as http:
        await session.initialize()
        tools = openai_tools((await session.list_tools()).tools)
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": "You answer questions about markets with the tools given. Times are UTC."},
            {"role": "user", "content": question}]
        for _ in range(max_rounds):
            resp = await http.post("/chat/completions", json={"model": model, "messages": messages, "tools": tools,
                                                              "temperature": 0})
            resp.raise_for_status()
            msg = resp.json()["choices"][0]["message"]
            calls = msg.get("tool_calls") or []
            if not calls:
                return str(msg.get("content") or ""), called
            messages.append({"role": "assistant", "content": msg.get("content"), "tool_calls": calls})
            for call in calls:
                name = call["function"]["name"]
                args = json.loads(call["function"].get("arguments") or "{}")
                called.append(name)
                result = await session.call_tool(name, args)
                content = (json.dumps(result.structured_content) if result.structured_content is not None
                           else " ".join(getattr(c, "text", "") for c in result.content))
                messages.append({"role": "tool", "tool_call_id": call["id"],
                                 "content": ("ERROR: " if result.is_error else "") + content[:20000]})
        raise RuntimeError(f"the model still asked for tools after {max_rounds} rounds; raise --max-rounds")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("question")
    p.add_argument("--base-url", default="http://127.0.0.1:11434/v1", help="OpenAI-compatible server up to /v1")
    p.add_argument("--model", default="llama3.2")
    p.add_argument("--max-rounds", type=int, default=6)
    p.add_argument("--mcp-arg", action="append", default=[], help="extra argument for `aitrados mcp` (repeatable)")
    a = p.parse_args()
    answer, called = anyio.run(lambda: ask(a.question, a.base_url, a.model, a.max_rounds, a.mcp_arg))
    print(f"tools called: {', '.join(called) or 'none'}")
    print(f"answer: {answer}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
