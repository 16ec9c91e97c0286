"""The official aitrados-api 0.2.0 data clients, unchanged, against the replay server: WebSocketClient,
LatestOhlcChartFlowManager and LatestOhlcMultiTimeframeManager (DatasetClient is in
test_compat_replay_reference.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("aitrados_api")

from aitrados.marketdata.replay_server import ReplayServerThread
from aitrados.marketdata.settings import MarketDataSettings

pytestmark = pytest.mark.timeout(120)
KEY = "replay-official-key-0123456789"
SYM = "CRYPTO:GLOBAL:BTCUSD"


def wait_for(cond: Any, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} not met within {timeout}s")


@pytest.fixture
def srv() -> Iterator[ReplayServerThread]:
    st = MarketDataSettings(replay_symbols=[SYM], replay_days=0.2, replay_history_days=2, replay_speed=600)
    with ReplayServerThread(st, secret_key=KEY, autostart="manual") as s:
        yield s


def test_official_ws_client_chart_flow_and_multi_timeframe_managers_run_on_the_replay(srv) -> None:
    from aitrados_api import (ChartDataFormat, ClientConfig, DatasetClient, LatestOhlcMultiTimeframeManager,
                              WebSocketClient)

    lock = threading.Lock()
    ohlc: list[Any] = []
    flows: list[Any] = []
    mtf: list[Any] = []

    def on_ohlc(client: Any, data: Any) -> None:
        with lock:
            ohlc.append(data)

    def on_flow(data: Any) -> None:
        with lock:
            flows.append(data)

    def on_mtf(name: str, data: Any, **kw: Any) -> None:
        with lock:
            mtf.append((name, data))

    api = DatasetClient(config=ClientConfig(secret_key=KEY, base_url=srv.http_url))
    ws = WebSocketClient(secret_key=KEY, endpoint=srv.ws_url, is_reconnect=False)
    manager = LatestOhlcMultiTimeframeManager(api_client=api, ws_client=ws, multi_timeframe_callback=on_mtf,
                                              limit=20, data_format=ChartDataFormat.POLARS, works=2,
                                              ohlc_handle_msg=on_ohlc, latest_ohlc_chart_flow_callback=on_flow)
    try:
        ws.run(is_thread=True)
        wait_for(lambda: ws.authorized, 30, "official WS client authorised by the replay server")
        manager.add_item({SYM: ["1M", "5M"]}, name="btc")
        srv.call(srv.server.start_clock)
        wait_for(lambda: len(ohlc) >= 3 and len(flows) >= 3 and mtf, 90, "ohlc, chart flow and multi-timeframe callbacks")
    finally:
        ws.close()
        api.close()
    rec = ohlc[0][0] if isinstance(ohlc[0], list) else ohlc[0]
    assert "close" in str(rec)
    assert mtf[0][0] == "btc"
