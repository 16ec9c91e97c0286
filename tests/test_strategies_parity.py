"""Every first-party strategy gets the same callbacks, in the same order, in-process and isolated.

Each strategy runs twice through the real `aitrados run` runtime (replay server, market-data
hub, trading runtime): once in the middleware's process, once in an isolated worker process
(``--isolate``) trading over the ``trading`` RPC service. A recording subclass (the fixture
plugin ``callbacks``) writes down every callback with the key fields of its arguments; the two
runs must give the same lines, and the broker the same orders, fills and equity. ``llm_gated``
runs without its model: every entry signal takes the fallback, and its gate decisions are
written down too. ``composite`` runs with its signal modules (price action, macro, breaking news)
in the middleware's process: its ``on_signal`` callbacks are compared too, and each price-action
signal must come just before the bar that caused it (the step guarantee).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import pytest

from fixtures.plugin_env import install

from aitrados.runtime import Runtime

from conftest import PATIENT_HEARTBEATS, bus_settings

pytestmark = pytest.mark.timeout(240)

UTC = dt.timezone.utc
SPX = "STOCK:US:SPX"
#: Parameters per strategy: short periods so a year of bundled SPX days trades many times.
PARAMS: dict[str, dict[str, Any]] = {
    "sma_cross": {"fast": 5, "slow": 15, "quantity": 2},
    "rsi_reversion": {"period": 5, "oversold": 40, "overbought": 60, "quantity": 2},
    "mtf_trend": {"trend_period": 4, "fast": 3, "slow": 8, "quantity": 2, "allow_short": True},
    "llm_gated": {"fast": 5, "slow": 15, "quantity": 2, "fallback_approve": True},
    "composite": {"trend_period": 10, "atr_period": 5, "confirm_bars": 5, "allow_short": True},
}
#: Plugins loaded beside the strategy, in the middleware's process: the composite's signal modules.
WITH: dict[str, list[str]] = {"composite": ["price_action", "macro", "breaking_news"]}


Run = tuple[list[list[Any]], list[tuple[Any, ...]], list[tuple[Any, ...]], float]


def run(name: str, ipc_dir: str, tmp: Path, isolate: bool, isolate_modules: tuple[str, ...] = ()) -> Run:
    """Replay 2018's SPX days with strategy *name* (recorded), isolated or not, and the signal modules
    *isolate_modules* isolated; returns its callbacks, the orders, the fills and the equity."""
    where = "-".join(["isolated" if isolate else "local", *isolate_modules])
    out = tmp / f"{name}-{where}.jsonl"
    s = bus_settings(ipc_dir, **PATIENT_HEARTBEATS)
    md = s.marketdata
    md.provider, md.replay_symbols = "replay", []
    md.replay_start, md.replay_end = dt.datetime(2018, 1, 1, tzinfo=UTC), "data_end"
    s.trading.report_dir = str(tmp / f"report-{where}")
    s.plugins["callbacks"] = {"strategy": name, "params": PARAMS[name], "out": str(out)}
    rt = Runtime(s, plugins=["callbacks", *WITH.get(name, [])], isolate=(["callbacks"] if isolate else []) + list(isolate_modules),
                 start_clock=False).start()
    try:
        if isolate:
            assert rt.strategies() == [] and [n for _, n, _ in rt.remote_strategies()] == [name]
            deadline = time.monotonic() + 30
            while name not in rt.trading.remote and time.monotonic() < deadline:
                time.sleep(0.02)
            assert name in rt.trading.remote, "the isolated strategy never attached"
        else:
            assert [st.strategy_name for st in rt.strategies()] == [name]
        rt.start_replay()
        assert rt.wait_replay(180), "the replay did not end"
        broker = rt.trading.engine.broker
        orders = [(o.strategy, o.client_id, o.side, o.quantity, o.status, o.created_at, o.filled_at, o.fill_price)
                  for o in sorted(broker.orders(), key=lambda o: o.id)]
        fills = [(f.order_id, f.strategy, f.client_id, f.side, f.quantity, f.price, f.commission, f.datetime)
                 for f in broker.fills()]
        equity = broker.equity()
    finally:
        rt.stop()
    # the worker wrote its last line before it acknowledged replay.end, which the report waited for
    calls = [json.loads(line) for line in out.read_text().splitlines()]
    return calls, orders, fills, equity


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_in_process_and_isolated_give_the_same_callbacks_and_fills(name: str, ipc_dir: str, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    install(tmp_path, monkeypatch, {"callbacks": "aitrados_testplugins.callbacks"})
    local, local_orders, local_fills, local_equity = run(name, ipc_dir, tmp_path, isolate=False)
    remote, remote_orders, remote_fills, remote_equity = run(name, ipc_dir, tmp_path, isolate=True)

    kinds = [c[0] for c in local]
    # the run is worth comparing: it started, saw the year's bars, traded, and stopped once
    assert kinds[0] == "on_start" and kinds.count("on_start") == 1 and kinds[-1] == "on_stop"
    assert kinds.count("on_stop") == 1 and kinds.count("on_bar") >= 200
    assert kinds.count("on_fill") >= 4 and len(local_orders) >= 4, "too few trades to compare"
    if name == "mtf_trend":
        assert kinds.count("on_mtf") >= 200
    assert "on_calendar_event" in kinds and "on_news" in kinds  # the 2018 samples reach every strategy
    if name == "composite":  # every module's signals reached it, each before the bar (news, event) that caused it
        signals = [c for c in local if c[0] == "on_signal"]
        assert {c[2][1] for c in signals} == {"price_action", "macro", "news"}
        assert any(c[2][3].startswith("breakout") for c in signals)
        bars = [c for c in local if c[0] in ("on_bar", "on_signal")]
        for i, c in enumerate(bars):  # a bar's signals (timed at its open) come after the bar before it, before it
            if c[0] == "on_signal" and c[2][1] == "price_action":
                nxt = next(d for d in bars[i + 1:] if d[0] == "on_bar")
                prev = next((d for d in reversed(bars[:i]) if d[0] == "on_bar"), None)
                assert c[2][4] <= nxt[2][2] and (prev is None or prev[2][2] < c[2][4]), \
                    f"price-action signal {c} is not between the bar before ({prev}) and its own bar ({nxt})"
    else:
        assert "on_signal" not in kinds
    gates = [c[2] for c in local if c[0] == "gate"]
    if name == "llm_gated":  # no model: every entry signal took the stated fallback (approve)
        assert len(gates) >= 4 and all(g[1:3] == [True, "fallback"] and "'absent'" in g[3] for g in gates)
    else:
        assert gates == []
    # the same callbacks, in the same order, with the same arguments; the same orders and equity
    for i, (a, b) in enumerate(zip(local, remote)):
        assert a == b, f"callback #{i} differs: in-process {a} vs isolated {b}"
    assert len(remote) == len(local)
    assert remote_orders == local_orders and remote_fills == local_fills and remote_equity == local_equity
