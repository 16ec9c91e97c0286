"""`aitrados run` flags that choose the dashboard's port, and `aitrados run --dashboard PORT` end to end."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import subprocess
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aitrados.cli import build_parser, dashboard_port

from conftest import AITRADOS
from test_cli_run import Lines, clean_env
from test_dashboard_server import frames_until


@pytest.mark.parametrize("argv,port", [(["run"], None), (["run", "--dashboard"], 8780), (["run", "--dashboard", "9001"], 9001),
                                       (["run", "--serve"], 8780), (["run", "--serve", "--no-dashboard"], None),
                                       (["run", "--serve", "--dashboard", "0"], 0)])
def test_run_flags_choose_the_dashboard_port(argv: list[str], port: int | None) -> None:
    parser, _ = build_parser()
    assert dashboard_port(parser.parse_args(argv)) == port


# ------------------------------------------------------------------ end to end: `aitrados run --dashboard PORT`
def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def candle_grows(ws_url: str, cookie: str, timeout: float) -> tuple[int, int]:
    """Connect like the page does and read frames until a candle count grows; returns (first, later)."""
    from websockets.asyncio.client import connect

    async with connect(ws_url, additional_headers={"Cookie": cookie}, open_timeout=timeout) as ws:
        first = max((await frames_until(ws, lambda m: bool(m["candles"]), timeout))["candles"].values())
        later = await frames_until(ws, lambda m: max(m["candles"].values(), default=0) > first, timeout)
    return first, max(later["candles"].values())


@pytest.mark.timeout(240)
def test_run_with_dashboard_serves_page_metrics_and_live_candles_then_exits_0(tmp_path: Path, ipc_dir: str) -> None:
    port = free_port()
    p = subprocess.Popen([*AITRADOS, "run", "--plugins", "sma_cross", "--serve", "--dashboard", str(port),
                          "--speed", "20/s", "--report-dir", "rep"],
                         env=clean_env(ipc_dir, "dash"), cwd=tmp_path, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    try:
        lines = Lines(p)
        assert lines.wait_for("dashboard: http", 120), "".join(lines.lines)[-3000:]
        link = next(m.group(0) for ln in lines.lines
                    if (m := re.search(r"http://127\.0\.0\.1:(\d+)/\?token=[\w-]+", ln)))
        assert f":{port}/" in link  # the port asked for
        base = link.split("?", 1)[0]
        assert httpx.get(base, timeout=10).status_code == 403  # nothing without the one-time token
        page = httpx.get(link, timeout=10)
        assert page.status_code == 200 and "lightweight-charts" in page.text
        cookie = page.headers["set-cookie"].split(";", 1)[0]
        metrics = httpx.get(base + "metrics", timeout=10)
        assert metrics.status_code == 200
        names = {f.name for f in text_string_to_metric_families(metrics.text)}
        assert {"aitrados_rpc_requests", "aitrados_rpc_latency_seconds", "aitrados_pubsub_messages"} <= names
        first, later = asyncio.run(candle_grows(base.replace("http", "ws") + "ws", cookie, 90))
        assert later > first
        p.send_signal(signal.SIGINT)  # --serve: a stop asked for is a clean end
        assert p.wait(90) == 0, "".join(lines.lines)[-3000:]
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)
        if p.stderr is not None:
            p.stderr.close()
