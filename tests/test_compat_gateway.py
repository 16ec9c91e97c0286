"""The aitrados_compat gateway with the official aitrados-api 0.2.0 clients, unchanged, against a
real runtime (replay server, shared HTTP client, chart flow, aligner) over real sockets."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import threading
from typing import Any

import pytest

pytest.importorskip("aitrados_api")

from aitrados.runtime import Runtime

from compat_peers import compat_runtime_settings, wait_for
from conftest import AITRADOS, child_env

pytestmark = pytest.mark.timeout(120)
SYM = "CRYPTO:GLOBAL:BTCUSD"


@pytest.fixture(scope="module")
def rt():
    d = tempfile.mkdtemp(prefix="atc-", dir="/tmp")
    s, cfg = compat_runtime_settings(d, [SYM, "STOCK:US:AAPL"])
    r = Runtime(s, plugins=["aitrados_compat"]).start()
    r.replay.server.autostart = "manual"
    r.compat_cfg, r.compat_dir = cfg, d  # type: ignore[attr-defined]
    yield r
    r.stop()
    shutil.rmtree(d, ignore_errors=True)


def gateway(rt: Runtime):
    from aitrados_plugins.aitrados_compat import _gateways

    return next(iter(_gateways.values()))


def test_frontend_request_ohlc_latest_is_answered_from_the_shared_http_client(rt: Runtime) -> None:
    from aitrados_api.trade_middleware.request import FrontendRequest

    before = rt.replay.server.state()["requests"].get("ohlc_latest", 0)
    res = FrontendRequest.call_sync("aitrados_api", "ohlc.a_ohlcs_latest", "crypto", "GLOBAL:BTCUSD", "1m",
                                    format="json", limit=5, timeout=20)
    assert res["status"] == "ok" and res["code"] == 200, res
    rows = res["result"]["data"]
    assert len(rows) == 5 and all("close" in r for r in rows)
    assert rt.replay.server.state()["requests"].get("ohlc_latest", 0) == before + 1  # through our one client
    ours = rt.mw.rpc_client(timeout=10).call("http", "get", path="crypto/bars/GLOBAL:BTCUSD/1M/latest",
                                              params={"format": "json", "limit": 5})
    assert [r["close"] for r in ours["data"]] == [r["close"] for r in rows]


def test_rpc_request_every_data_family_and_official_errors(rt: Runtime) -> None:
    from aitrados_api.universal_interface.rpc_request import rpc_request

    ref = rpc_request("aitrados_api", "reference.a_reference", "stock", "US:AAPL", timeout=20)
    assert ref["status"] == "ok" and ref["result"], ref
    news = rpc_request("aitrados_api", "news.a_news_latest", limit=2, timeout=20)
    assert news["status"] == "ok", news
    codes = rpc_request("aitrados_api", "economic.a_event_codes", "US", timeout=20)
    assert codes["status"] == "ok", codes
    hol = rpc_request("aitrados_api", "holiday.a_holiday_codes", "US", timeout=20)
    assert hol["status"] == "ok", hol
    unknown = rpc_request("aitrados_api", "no.such_function", timeout=20)
    assert unknown["status"] == "error" and "Unknown request" in unknown["message"]
    bad = rpc_request("aitrados_api", "ohlc.a_ohlcs_latest", "crypto", timeout=20)  # missing arguments
    assert bad["status"] == "error" and "country_symbol" in bad["message"]
    ws = rpc_request("aitrados_api", "a_get_all_subscribed_topics", timeout=20)  # the runtime's one WS session
    assert ws["status"] == "ok" and set(ws["result"]) == {"ohlc", "news", "event"}, ws
    online = rpc_request("aitrados_api", "get_all_online_backend_services", timeout=20)
    assert "aitrados_api" in online["result"]


def test_chart_flow_and_multi_timeframe_items_use_our_one_chart_flow_and_aligner(rt: Runtime) -> None:
    from aitrados_api.universal_interface.rpc_request import rpc_request

    add = rpc_request("aitrados_api", "add_latest_ohlc_chart_flow_item", SYM, "15M", timeout=20)
    assert add["status"] == "ok", add
    native = rt.mw.rpc_client(timeout=10)
    assert {(w["full_symbol"], w["interval"]) for w in native.call("chart", "list")} >= {(SYM, "15M")}
    data = rpc_request("aitrados_api", "add_latest_ohlc_chart_flow_item_or_get_data", SYM, "15M", limit=3,
                       to_format="list", timeout=20)
    assert data["status"] == "ok" and data["result"]["full_symbol"] == SYM and data["result"]["interval"] == "15M"
    assert len(data["result"]["data"]) == 3
    assert [b["close"] for b in data["result"]["data"]] == [b["close"] for b in native.call(
        "chart", "window", full_symbol=SYM, interval="15M", size=3)]
    assert rpc_request("aitrados_api", "remove_latest_ohlc_chart_flow_item", SYM, "15M", timeout=20)["result"] is True
    mtf = rpc_request("aitrados_api", "add_latest_ohlc_multi_timeframe_item", {SYM: ["5M", "15M"]}, name="g1",
                      timeout=20)
    assert mtf["status"] == "ok", mtf
    assert "g1" in native.call("mtf", "list_groups")
    got = rpc_request("aitrados_api", "add_latest_ohlc_multi_timeframe_item_or_get_data", {SYM: ["5M", "15M"]},
                      name="g1", limit=4, to_format="list", timeout=20)
    assert got["status"] == "ok", got
    five, fifteen = got["result"][SYM]  # the official shape: {full_symbol: [data of each timeframe]}
    assert [r["interval"] for r in five] == ["5M"] * 4 and [r["interval"] for r in fifteen] == ["15M"] * 4
    assert [r["close"] for r in fifteen] == [b["close"] for b in native.call(
        "chart", "window", full_symbol=SYM, interval="15M", size=4)]
    assert rpc_request("aitrados_api", "remove_latest_ohlc_multi_timeframe_item", "g1", timeout=20)["status"] == "ok"
    assert "g1" not in native.call("mtf", "list_groups")


def test_or_get_data_to_format_csv_and_dataframe_in_the_official_shapes(rt: Runtime) -> None:
    """The official backend sends CSV text unless ``to_format="list"`` (a DataFrame cannot travel):
    CSV by default and for pandas/polars, which the official client's own helper turns into a
    DataFrame; its values are those of our window (as pandas reads them back)."""
    import io

    import pandas as pd
    from aitrados_api.common_lib.any_list_data_to_format_data import any_data_to_format_data
    from aitrados_api.universal_interface.rpc_request import rpc_request

    native = rt.mw.rpc_client(timeout=10)
    csv_default = rpc_request("aitrados_api", "add_latest_ohlc_chart_flow_item_or_get_data", SYM, "15M", limit=5,
                              timeout=20)
    assert csv_default["status"] == "ok", csv_default
    text = csv_default["result"]["data"]
    assert isinstance(text, str) and text.splitlines()[0].startswith("asset_schema,interval,")
    asked_pandas = rpc_request("aitrados_api", "add_latest_ohlc_chart_flow_item_or_get_data", SYM, "15M", limit=5,
                               to_format="pandas", timeout=20)
    df = any_data_to_format_data(asked_pandas, to_format="pandas")  # the official client's conversion
    assert isinstance(df, pd.DataFrame) and len(df) == 5
    window = native.call("chart", "window", full_symbol=SYM, interval="15M", size=5)
    ours = pd.DataFrame({"close": [b["close"] for b in window], "volume": [b["volume"] for b in window]})
    # the official rounding of CSV floats: 4 decimals below 10, else 2
    for col in ("close", "volume"):
        want = [round(v, 4) if abs(v) < 10 else round(v, 2) for v in ours[col]]
        assert df[col].tolist() == pytest.approx(want, abs=1e-9), col
    assert pd.read_csv(io.StringIO(text))["close"].tolist() == df["close"].tolist()
    shaped = rpc_request("aitrados_api", "add_latest_ohlc_chart_flow_item_or_get_data", SYM, "15M",
                         rename_column_name_mapping={"interval": "timeframe"},
                         filter_column_names=["interval", "close", "no_such_column"], limit=2, to_format="polars",
                         timeout=20)
    pl_df = any_data_to_format_data(shaped, to_format="polars")
    assert pl_df.columns == ["timeframe", "close"] and pl_df.height == 2
    assert pl_df["timeframe"].to_list() == ["15M", "15M"]
    mtf = rpc_request("aitrados_api", "add_latest_ohlc_multi_timeframe_item_or_get_data", {SYM: ["15M"]},
                      name="g_csv", limit=3, timeout=20)
    assert mtf["status"] == "ok", mtf
    (csv15,) = mtf["result"][SYM]
    assert pd.read_csv(io.StringIO(csv15))["close"].tolist() == df["close"].tolist()[-3:]
    bad = rpc_request("aitrados_api", "add_latest_ohlc_chart_flow_item_or_get_data", SYM, "15M", limit="x",
                      timeout=20)
    assert bad["status"] == "error" and "limit" in bad["message"]
    assert rpc_request("aitrados_api", "remove_latest_ohlc_multi_timeframe_item", "g_csv", timeout=20)["result"]


def test_official_subscriber_gets_our_bars_and_official_publishes_reach_native(rt: Runtime) -> None:
    from aitrados_api.trade_middleware.subscriber import AsyncSubscriber

    from aitrados.marketdata.http_client import AitradosHTTPClient

    got: list[Any] = []

    class MySubscriber(AsyncSubscriber):
        async def on_ohlc(self, msg: Any) -> None:
            got.append(msg)

    sub = MySubscriber()
    sub.subscribe_topics("on_ohlc")
    sub.run(is_thread=True)
    with AitradosHTTPClient(rt.http_url, "k") as http:
        bar = http.ohlc_latest(SYM, "1M", limit=1)[-1]
    pub = rt.mw.publisher()
    # subscriptions travel up asynchronously: publish until the first one arrives (bounded), then count
    wait_for(lambda: pub.publish(f"ohlc.{SYM}.1M", bar) and got, what="first on_ohlc")
    assert isinstance(got[0], list) and got[0][0]["close"] == bar.close
    assert got[0][0]["interval"] == "1M"
    pub.close()

    native = rt.mw.subscriber(["compat.on_signal"])
    from aitrados_api.trade_middleware.library.publisher_mixin import AsyncPublisher

    official = AsyncPublisher()
    seen = []

    def one() -> bool:
        official.send_topic("on_signal", {"full_symbol": SYM, "side": "buy"})
        m = native.recv(timeout=0.1)
        if m is not None:
            seen.append(m)
        return bool(seen)

    wait_for(one, what="official publish on the native bus")
    assert seen[0].topic == "compat.on_signal" and seen[0].data == {"full_symbol": SYM, "side": "buy"}
    native.close()
    official.close()


def test_official_backend_service_registers_and_answers_official_and_native_callers(rt: Runtime) -> None:
    from aitrados_api.trade_middleware.backend_service import BackendService
    from aitrados_api.trade_middleware.identity_mixin import IdentityMixin
    from aitrados_api.trade_middleware.response import AsyncBackendResponse
    from aitrados_api.universal_interface.rpc_request import rpc_request

    class Ident(IdentityMixin):
        backend_identity = "my_signals"

    class MyService(BackendService):
        IDENTITY = Ident

        async def a_accept(self, function_name: str, *args: Any, **kwargs: Any) -> Any:
            return json.dumps({"function": function_name, "args": list(args), "kwargs": kwargs})

    def serve() -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(AsyncBackendResponse(MyService()).init())
        except Exception:
            pass

    threading.Thread(target=serve, daemon=True).start()
    wait_for(lambda: "my_signals" in gateway(rt).backends, what="official backend registered")
    res = rpc_request("my_signals", "score", 1, 2, x=3, timeout=20)
    assert res == {"function": "score", "args": [1, 2], "kwargs": {"x": 3}}
    # official clients reach native services through the same gateway: one registry
    charts = rpc_request("chart", "list", timeout=20)
    assert charts["status"] == "ok" and isinstance(charts["result"], list)
    missing = rpc_request("no_such_backend", "x", timeout=20)
    assert missing["status"] == "error" and "no_such_backend" in missing["message"]
    # and native callers reach the official backend under its name: `aitrados call my_signals score`
    native = rt.mw.rpc_client(timeout=20)
    wait_for(lambda: "my_signals" in gateway(rt)._proxies, what="native twin served")
    assert native.call("my_signals", "score", args=[4], y=5) == {"function": "score", "args": [4], "kwargs": {"y": 5}}
    r = subprocess.run([*AITRADOS, "call", "my_signals", "rank", "z=1"], env=child_env(rt.settings),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"function": "rank", "args": [], "kwargs": {"z": 1}}


STRATEGY = """
import json, sys
sys.path.insert(0, {tests!r})
from compat_peers import point_official_clients
point_official_clients({ports!r}, {ipc!r})
from aitrados_api.universal_interface.rpc_request import rpc_request
print(json.dumps(rpc_request("aitrados_api", "add_latest_ohlc_chart_flow_item", {sym!r}, "1M", timeout=30)))
"""


def test_readme_example_chart_flow_streams_to_an_official_subscriber_from_a_strategy_process(rt: Runtime) -> None:
    """The package's README-level usage, unchanged: a strategy process asks for a chart flow with
    rpc_request; an AsyncSubscriber gets on_ohlc_chart_flow_streaming as the replay runs."""
    from pathlib import Path

    from aitrados_api.trade_middleware.subscriber import AsyncSubscriber

    flows: list[Any] = []

    class Strategy(AsyncSubscriber):
        async def on_ohlc_chart_flow_streaming(self, msg: Any) -> None:
            flows.append(msg)

    sub = Strategy()
    sub.subscribe_topics("on_ohlc_chart_flow_streaming")
    sub.run(is_thread=True)
    cfg = rt.compat_cfg  # type: ignore[attr-defined]
    ports = [cfg["frontend_port"], cfg["backend_port"], cfg["sub_port"], cfg["pub_port"]]
    code = STRATEGY.format(tests=str(Path(__file__).parent), ports=ports, ipc=rt.compat_dir, sym=SYM)  # type: ignore[attr-defined]
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout.strip().splitlines()[-1])["status"] == "ok"
    rt.start_replay()
    wait_for(lambda: any(f.get("full_symbol") == SYM and f.get("interval") == "1M" for f in flows),
             timeout=60, what="on_ohlc_chart_flow_streaming for the strategy's chart")
    f = next(f for f in flows if f.get("interval") == "1M")
    assert isinstance(f["closed"], list) and all("close" in b for b in f["closed"])
