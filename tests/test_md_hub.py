"""The shared chart flow and aligner in a real runtime: replay server, WS/HTTP clients, bus, RPC."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import tempfile
import time

import pandas as pd
import pytest

from aitrados.runtime import Runtime

from conftest import AITRADOS, PATIENT_HEARTBEATS, bus_settings, child_env, joined_subscriber

pytestmark = pytest.mark.timeout(90)
SYM = "CRYPTO:GLOBAL:BTCUSD"


@pytest.fixture
def runtime(ipc_dir: str, tmp_path):
    s = bus_settings(ipc_dir, **PATIENT_HEARTBEATS)
    md = s.marketdata
    md.provider = "replay"
    md.replay_symbols = [SYM]
    md.replay_days = 0.1  # 144 one-minute bars
    md.replay_history_days = 0.1
    s.trading.report_dir = str(tmp_path / "report")
    rt = Runtime(s, plugins=[]).start()
    yield rt
    rt.stop()


def collect(sub, until: str = "replay.end", timeout: float = 30.0) -> list:
    out, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = sub.recv(timeout=1.0)
        if m is None:
            continue
        out.append(m)
        if m.topic == until:
            return out
    raise AssertionError(f"no {until} within {timeout}s; got {len(out)} messages")


def test_window_hydrates_once_and_is_shared_across_processes(runtime: Runtime) -> None:
    # keep the replay clock still: a subscription would start it after a 0.3 s grace, and the
    # window would then gain a live bar while the other process starts up (a race, not a check)
    server = runtime.replay.server
    server.autostart = "manual"
    c = runtime.mw.rpc_client(timeout=10)
    first = c.call("chart", "add", full_symbol=SYM, interval="15M", size=8)
    again = c.call("chart", "add", full_symbol=SYM, interval="15M", size=8)
    assert first["created"] and first["hydrated"] == 7 and not again["created"] and again["hydrated"] == 0
    assert server.state()["requests"].get("ohlc_latest") == 1  # fetched once
    # another process reads the same instance over ipc: no new HTTP request
    r = subprocess.run([*AITRADOS, "call", "chart", "window", f"full_symbol={SYM}", "interval=15M"],
                       env=child_env(runtime.settings), capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    theirs = json.loads(r.stdout)
    ours = c.call("chart", "window", full_symbol=SYM, interval="15M")
    assert [b["close"] for b in theirs] == [b["close"] for b in ours] and len(ours) == 7
    assert server.state()["requests"].get("ohlc_latest") == 1
    # hydrated bars equal the provider's own history up to the clock, which never moved
    st = server.state()
    assert not st["running"] and st["ticks_sent"] == 0 and st["clock"] == st["start"]
    hist = server.store.latest_bars(SYM, "15M", server.store.start, 7)
    assert [b.close for b in hist] == [b["close"] for b in ours]
    assert {w["interval"] for w in c.call("chart", "list")} == {"15M"}
    assert c.call("chart", "remove", full_symbol=SYM, interval="15M") is True


def test_stream_aggregates_like_pandas_and_aligns_without_lookahead(runtime: Runtime) -> None:
    c = runtime.mw.rpc_client(timeout=10)
    sub = joined_subscriber(runtime.mw, ["ohlc.", "chart.", "mtf.", "replay."])
    c.call("chart", "add", full_symbol=SYM, interval="1M", size=300)
    c.call("mtf", "add_group", name="my-own-name", members={SYM: ["1M", "5M"]})  # starts the replay
    msgs = collect(sub)
    assert sub.stats.missed == 0 and sub.stats.malformed == 0
    closed = lambda iv: [m.data for m in msgs if m.topic == f"ohlc.{SYM}.{iv}" and m.data["closed"]]  # noqa: E731
    m1, m5 = closed("1M"), closed("5M")
    assert len(m1) == 144
    # oracle: pandas resampling of the 1-minute bars the bus delivered
    df = pd.DataFrame(m1).set_index(pd.DatetimeIndex([b["datetime"] for b in m1]))
    agg = df.resample("5min", label="left", closed="left").agg(
        {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}).dropna()
    got = pd.DataFrame(m5).set_index(pd.DatetimeIndex([b["datetime"] for b in m5]))
    common = got.index.intersection(agg.index)
    assert len(common) >= 27
    pd.testing.assert_frame_equal(got.loc[common, ["open", "high", "low", "close", "volume"]],
                                  agg.loc[common, ["open", "high", "low", "close", "volume"]], check_freq=False)
    # aligned snapshots: once per frontier, never a bar from after the frontier
    snaps = [m.data for m in msgs if m.topic == "mtf.my-own-name"]
    frontiers = [s["frontier"] for s in snaps]
    assert len(frontiers) == len(set(frontiers)) == 144 and frontiers == sorted(frontiers)
    for s in snaps:
        for iv, bar in s["bars"][SYM].items():
            assert bar["close_datetime"] <= s["frontier"], (iv, bar, s["frontier"])
    # chart messages carry increasing sequence numbers per window
    seqs = [m.data["seq"] for m in msgs if m.topic == f"chart.{SYM}.5M"]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    # replay.step numbers increase by one and end the stream
    steps = [m.data["step"] for m in msgs if m.topic == "replay.step"]
    assert steps == list(range(steps[0], steps[0] + len(steps)))
    g = c.call("mtf", "get_group", name="my-own-name")
    assert g["last"]["frontier"] == frontiers[-1] and g["stats"]["emitted"] == 144
    assert c.call("mtf", "remove_group", name="my-own-name") is True
    with pytest.raises(Exception, match="no group named"):
        c.call("mtf", "get_group", name="my-own-name")


def test_each_bar_is_encoded_once_and_bus_payloads_equal_the_in_process_events(runtime: Runtime) -> None:
    """The hub encodes a bar once and embeds those bytes in the chart message: what a subscriber
    decodes from ``ohlc.*`` and ``chart.*`` is exactly what in-process consumers got."""
    import msgspec

    from aitrados.bus import protocol as P

    seen: dict[str, list] = {"bar": [], "chart": []}
    runtime.hub.consumers.append(lambda kind, obj: seen[kind].append(obj) if kind in seen else None)
    c = runtime.mw.rpc_client(timeout=10)
    sub = joined_subscriber(runtime.mw, ["ohlc.", "chart.", "replay.end"])
    c.call("chart", "add", full_symbol=SYM, interval="1M", size=20)  # a subscription starts the replay
    msgs = collect(sub)
    sub.close()
    bars = [m.data for m in msgs if m.topic.startswith("ohlc.")]
    charts = [m.data for m in msgs if m.topic.startswith("chart.")]
    assert len(seen["bar"]) > 100 and len(charts) == len(seen["chart"])
    # closed 1-minute bars: one ohlc message each, equal field by field to the Bar handed in-process
    assert bars == [msgspec.msgpack.decode(P.encode(b)) for b in seen["bar"]]
    assert charts == [msgspec.msgpack.decode(P.encode(ch)) for ch in seen["chart"]]
    assert all(ch["last"] == ch["closed"][-1] for ch in charts if ch["closed"])


def test_consumers_get_each_event_in_order_whether_they_finish_at_once_or_await(runtime: Runtime) -> None:
    """A time step's bars reach the consumers in one call, yet each event still goes to every consumer
    in order, an awaiting consumer finished before the next one runs; a consumer marked with
    ``events.consumes`` gets only its kinds."""
    import asyncio

    from aitrados.events import Kind, consumes

    log: list[tuple[str, str, object]] = []
    held: list[int] = []

    def slow(kind: str, obj: object):  # noqa: ANN202 - returns an awaitable for bars, None otherwise
        if kind != Kind.BAR:
            log.append(("slow", kind, obj))
            return None

        async def later() -> None:
            held.append(runtime.hub.pub.held)  # the hub sent what it held before waiting for us
            await asyncio.sleep(0)  # really suspends: the hub must wait for it
            log.append(("slow", kind, obj))
        return later()

    @consumes(Kind.BAR, Kind.STEP)
    def marked(kind: str, obj: object) -> None:
        log.append(("marked", kind, obj))

    def plain(kind: str, obj: object) -> None:
        log.append(("plain", kind, obj))

    runtime.hub.consumers.extend([slow, marked, plain])
    c = runtime.mw.rpc_client(timeout=10)
    sub = joined_subscriber(runtime.mw, ["replay.end"])
    c.call("chart", "add", full_symbol=SYM, interval="5M", size=20)  # a subscription starts the replay
    collect(sub)
    sub.close()
    # replay.end is published before the consumers get END: wait until the hub has handed it to all
    deadline = time.monotonic() + 30
    while not runtime.hub.ended.is_set():
        assert time.monotonic() < deadline, "the hub never finished handing on the end"
        time.sleep(0.01)
    events = [(k, o) for who, k, o in log if who == "plain"]
    assert sum(k == Kind.BAR for k, _ in events) >= 25 and any(k == Kind.CHART for k, _ in events)
    assert events[-1][0] == Kind.END
    want = []
    for k, o in events:
        want.append(("slow", k, o))
        if k in (Kind.BAR, Kind.STEP):
            want.append(("marked", k, o))
        want.append(("plain", k, o))
    assert log == want
    assert len(held) >= 25 and set(held) == {0}
