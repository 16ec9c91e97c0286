"""An isolated strategy's own state reaches ``trading.strategy_state`` and the dashboard.

A real runtime with the sma_cross plugin isolated in its worker process and the dashboard on a
free port: the worker reports the strategy's ``state()`` while the replay runs and once more at
its end; the RPC and the dashboard's status both show the final state.
"""

from __future__ import annotations


import pytest

from aitrados.runtime import Runtime

from conftest import joined_subscriber
from test_strategies_remote import sma_replay_settings, wait_for

pytestmark = pytest.mark.timeout(180)


def test_an_isolated_strategys_state_is_shown_by_the_rpc_and_the_dashboard(ipc_dir: str, tmp_path) -> None:
    s = sma_replay_settings(ipc_dir, str(tmp_path / "report"))
    rt = Runtime(s, plugins=["sma_cross"], isolate=["sma_cross"], start_clock=False, dashboard=0).start()
    try:
        assert not rt.trading.engine.strategies, "sma_cross must run in its worker, not in this process"
        assert wait_for(lambda: "sma_cross" in rt.trading.remote, 30), "the isolated strategy never attached"
        with joined_subscriber(rt.mw, ["replay.end"]) as sub:
            rt.start_replay()
            assert sub.recv(timeout=90) is not None, "the replay stalled"
        assert rt.wait_replay(60)
        with rt.mw.rpc_client(timeout=10) as c:
            states = c.call("trading", "strategy_state")
        st = states["sma_cross"]
        assert set(st["indicators"]) == {"sma5", "sma20"} and "SMA5" in st["reason"]
        assert all(isinstance(v, float) for v in st["indicators"].values())  # warmed up: the final state
        d = rt.dashboard
        assert d is not None
        assert wait_for(lambda: (d.state.status.get("strategies") or {}).get("sma_cross") == st, 20), \
            d.state.status.get("strategies")
    finally:
        rt.stop()
