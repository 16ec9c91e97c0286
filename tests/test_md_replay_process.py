"""The replay server in its own process (``marketdata.replay_process``): control over its pipes, and a
whole run that sees the same bars and fills as with the server in the middleware's process."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from aitrados.marketdata.replay_process import ReplayServerProcess
from aitrados.marketdata.settings import MarketDataSettings
from aitrados.runtime import Runtime
from aitrados.trading.strategy import Strategy

from conftest import PATIENT_HEARTBEATS, bus_settings

pytestmark = pytest.mark.timeout(120)
SYMS = ["STOCK:US:S000", "STOCK:US:S001"]
START = dt.datetime(2018, 3, 5, 14, 30, tzinfo=dt.timezone.utc)


def md(**over: object) -> MarketDataSettings:
    return MarketDataSettings(provider="replay", replay_symbols=SYMS, replay_start=START, replay_days=0.2,
                              replay_history_days=0.05, replay_bundled=False, **over)


def test_process_answers_state_autostart_and_refuses_bad_commands() -> None:
    srv = ReplayServerProcess(md(replay_autostart="manual"), log_level="WARNING").start()
    try:
        assert srv.http_url.startswith("http://127.0.0.1:") and srv.ws_url.startswith("ws://127.0.0.1:")
        st = srv.server.state()
        assert st["start"] == "2018-03-05T14:30:00+00:00" and not st["running"] and sorted(st["symbols"]) == SYMS
        assert srv.server.autostart == "manual"
        srv.server.autostart = "first_subscribe"
        assert srv.server.autostart == "first_subscribe"
        with pytest.raises(RuntimeError, match="is not immediately, first_subscribe or manual"):
            srv.server.autostart = "later"
        with pytest.raises(RuntimeError, match="unknown command 'rewind'"):
            srv.request("rewind")
        srv.start_clock()  # the bad commands were answered; the server kept going: it replays to the end
        deadline = time.monotonic() + 60
        while not (st := srv.server.state())["ended"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert st["ended"] and st["ticks_sent"] == st["ticks_total"] > 0 and st["error"] is None
        proc = srv._proc
    finally:
        srv.stop()
    assert proc is not None and proc.returncode == 0  # closing its stdin stopped it cleanly
    with pytest.raises(RuntimeError, match="not running"):
        srv.request("state")


def test_bad_settings_fail_start_with_the_childs_reason() -> None:
    with pytest.raises(RuntimeError, match="replay server process: .*"):
        ReplayServerProcess(md(replay_bar_files=["/nonexistent/STOCK_US_X_DAY.csv"]), log_level="CRITICAL").start()


class Buyer(Strategy):
    """Buys on the 10th bar of each symbol and sells on the 40th: fills depend on every bar's order."""

    name = "buyer"
    intervals = ("1M",)
    symbols = tuple(SYMS)

    def on_start(self) -> None:
        self.seen: dict[str, int] = {}

    def on_bar(self, bar) -> None:  # noqa: ANN001
        n = self.seen[bar.full_symbol] = self.seen.get(bar.full_symbol, 0) + 1
        if n == 10:
            self.ctx.buy(bar.full_symbol, 10)
        elif n == 40:
            self.ctx.sell(bar.full_symbol, 10)


def run(ipc_dir: str, tmp_path, replay_process: bool) -> tuple[int, list, float]:  # noqa: ANN001
    s = bus_settings(ipc_dir, **PATIENT_HEARTBEATS)
    s.marketdata = md(replay_process=replay_process)
    s.trading.report_dir = str(tmp_path / f"report-{replay_process}")
    rt = Runtime(s, plugins=[], strategies=[Buyer()]).start()
    try:
        assert rt.wait_replay(90), "the replay did not end"
        fills = [(f.full_symbol, f.quantity, f.price, f.datetime) for f in rt.trading.engine.broker.fills()]
        return rt.hub.counts["bars_in"], fills, rt.trading.engine.broker.equity()
    finally:
        rt.stop()


def test_a_run_with_the_server_in_its_own_process_equals_the_threaded_one(ipc_dir: str, tmp_path) -> None:  # noqa: ANN001
    threaded = run(ipc_dir, tmp_path, False)
    own = run(ipc_dir, tmp_path, True)
    assert threaded[0] > 100 and len(threaded[1]) == 4
    assert own == threaded
