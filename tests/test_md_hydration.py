"""Chart windows longer than the 1000-bar OHLC page: hydrated by paging, in a real runtime
(replay server over HTTP, hub, RPC); the oracle is the replay server's own store."""

from __future__ import annotations

import pytest

from aitrados.marketdata.models import bar_from_record
from aitrados.runtime import Runtime

from conftest import PATIENT_HEARTBEATS, bus_settings

pytestmark = pytest.mark.timeout(120)
BTC, SPX = "CRYPTO:GLOBAL:BTCUSD", "STOCK:US:SPX"


@pytest.fixture
def runtime(ipc_dir: str, tmp_path):
    s = bus_settings(ipc_dir, **PATIENT_HEARTBEATS)
    md = s.marketdata
    md.provider = "replay"
    md.replay_symbols = [BTC]
    md.replay_days = 0.05
    md.replay_history_days = 2  # 2880 one-minute bars before the start
    s.trading.report_dir = str(tmp_path / "report")
    rt = Runtime(s, plugins=[]).start()
    yield rt
    rt.stop()


def test_windows_beyond_1000_bars_hydrate_by_paging(runtime: Runtime) -> None:
    server = runtime.replay.server
    store = server.store
    c = runtime.mw.rpc_client(timeout=60)
    # 20 years of real S&P 500 days: 2999 closed bars = one latest page + two history pages
    info = c.call("chart", "add", full_symbol=SPX, interval="DAY", size=3000)
    assert info["created"] and info["hydrated"] == 2999
    ours = [bar_from_record(b) if isinstance(b, dict) else b
            for b in c.call("chart", "window", full_symbol=SPX, interval="DAY", closed_only=True)]
    want = store.latest_bars(SPX, "DAY", store.start, 2999)
    assert len(want) == 2999 and [(b.datetime, b.close) for b in ours] == [(b.datetime, b.close) for b in want]
    counts = server.state()["requests"]
    assert counts.get("ohlc_latest") == 1 and counts.get("ohlc_history") == 2
    # 1399 generated minutes: one latest page + one history page of 399
    info = c.call("chart", "add", full_symbol=BTC, interval="1M", size=1400)
    assert info["hydrated"] == 1399
    ours = [bar_from_record(b) if isinstance(b, dict) else b
            for b in c.call("chart", "window", full_symbol=BTC, interval="1M", closed_only=True)]
    # the replay clock may have moved on meanwhile: the oracle is the store's 1399 bars up to our last
    want = store.latest_bars(BTC, "1M", ours[-1].close_datetime, 1399)
    assert len(want) == 1399 and [(b.datetime, b.close) for b in ours[:1399]] == [(b.datetime, b.close) for b in want]
    counts = server.state()["requests"]
    assert counts.get("ohlc_latest") == 2 and counts.get("ohlc_history") == 3
    # a window no longer than one page takes one request, as before
    assert c.call("chart", "add", full_symbol=BTC, interval="5M", size=500)["hydrated"] == 499
    counts = server.state()["requests"]
    assert counts.get("ohlc_latest") == 3 and counts.get("ohlc_history") == 3
