"""The register_mcp_tools hook: plugins contribute MCP tools; `aitrados mcp --plugins` serves them
(in a separate process, with an embedded middleware, driven by the SDK's client)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import anyio
import pytest

from fixtures.plugin_env import install

from aitrados.mcp.backend import Backend
from aitrados.settings import Settings

from conftest import PYTHON, bus_settings

pytest.importorskip("mcp")
from mcp.client import ClientSession  # noqa: E402
from mcp.client.stdio import StdioServerParameters, stdio_client  # noqa: E402
from mcp.server.mcpserver.exceptions import ToolError  # noqa: E402

from aitrados.mcp.server import McpToolError, build_server, plugin_tools  # noqa: E402

pytestmark = pytest.mark.timeout(180)

EPS = {"mcp_tools": "aitrados_testplugins.mcp_tools:Tools", "mcp_clash": "aitrados_testplugins.mcp_tools:Clash",
       "mcp_not_callable": "aitrados_testplugins.mcp_tools:NotCallable"}


def test_register_mcp_tools_contributes_validated_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         settings: Settings) -> None:
    install(tmp_path, monkeypatch, EPS)
    settings.plugins = {"mcp_tools": {"max_units": 40}}
    tools = plugin_tools(settings, ["mcp_tools"])
    assert [(p, o["name"]) for p, _, o in tools] == [("mcp_tools", "position_size"), ("mcp_tools", "shout")]
    server = build_server(Backend(settings), extra_tools=tools)

    async def go() -> tuple:
        listed = {t.name: t for t in await server.list_tools()}
        sized = await server.call_tool("position_size", {"equity": 100000, "risk_pct": 1, "stop_distance": 50})
        capped = await server.call_tool("position_size", {"equity": 1e7, "risk_pct": 1, "stop_distance": 1})
        with pytest.raises(ToolError, match="stop_distance must be positive"):
            await server.call_tool("position_size", {"equity": 1, "risk_pct": 1, "stop_distance": 0})
        with pytest.raises(ToolError, match="risk_pct"):
            await server.call_tool("position_size", {"equity": 1, "risk_pct": 50, "stop_distance": 1})
        return listed, sized, capped

    listed, sized, capped = asyncio.run(go())
    assert {"position_size", "shout", "chart_window"} <= set(listed) and "submit_order" not in listed
    assert listed["shout"].description == "The text in capitals."
    assert sized.structured_content == {"result": 20.0}
    assert capped.structured_content == {"result": 40.0}, "the plugin's settings reach its tools"


def test_register_mcp_tools_clash_and_bad_contribution_name_the_plugin(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch,
                                                                       settings: Settings) -> None:
    install(tmp_path, monkeypatch, EPS)
    with pytest.raises(McpToolError, match=r"plugin 'mcp_clash'.*'shout' is already registered by 'mcp_tools'"):
        plugin_tools(settings, ["mcp_tools", "mcp_clash"])
    with pytest.raises(McpToolError, match=r"plugin 'mcp_not_callable'.*not a function"):
        plugin_tools(settings, ["mcp_not_callable"])


def test_plugin_tools_over_stdio_with_an_embedded_middleware(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             ipc_dir: str) -> None:
    install(tmp_path, monkeypatch, EPS)
    b = bus_settings(ipc_dir).bus
    env = {k: v for k, v in os.environ.items() if not k.startswith("AITRADOS_")}
    env.update({"AITRADOS_BUS__NAME": b.name, "AITRADOS_BUS__IPC_DIR": b.ipc_dir, "AITRADOS_BUS__RPC_FRONTEND_PORT": "0",
                "AITRADOS_BUS__RPC_BACKEND_PORT": "0", "AITRADOS_BUS__SUB_PORT": "0", "AITRADOS_BUS__PUB_PORT": "0",
                "AITRADOS_CONFIG": str(tmp_path / "none.toml"), "AITRADOS_MARKETDATA__PROVIDER": "replay",
                "AITRADOS_MARKETDATA__REPLAY_SYMBOLS": '["CRYPTO:GLOBAL:BTCUSD"]',
                "AITRADOS_MARKETDATA__REPLAY_DAYS": "0.05", "AITRADOS_MARKETDATA__REPLAY_HISTORY_DAYS": "0.2"})
    server = StdioServerParameters(command=PYTHON, args=["-m", "aitrados", "mcp", "--embedded", "always",
                                                         "--plugins", "mcp_tools"], env=env, cwd=str(tmp_path))

    async def go() -> tuple:
        with anyio.fail_after(120):
            async with stdio_client(server) as (r, w), ClientSession(r, w) as session:
                await session.initialize()
                names = {t.name for t in (await session.list_tools()).tools}
                shout = await session.call_tool("shout", {"text": "buy the dip"})
                win = await session.call_tool("chart_window", {"full_symbol": "CRYPTO:GLOBAL:BTCUSD",
                                                               "interval": "5M", "size": 6})
                return names, shout, win

    names, shout, win = anyio.run(go)
    assert {"position_size", "shout", "chart_window", "account"} <= names
    assert shout.structured_content == {"result": "BUY THE DIP"}
    assert not win.is_error and 1 <= win.structured_content["count"] <= 6
