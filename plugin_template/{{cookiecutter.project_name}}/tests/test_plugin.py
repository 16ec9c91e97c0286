"""Tests of {{ cookiecutter.plugin_name }}: the pure logic, and the installed plugin running in a real aitrados host."""

from __future__ import annotations

import datetime as dt
import tempfile
import time

import pytest

from aitrados.host import PluginHost
from aitrados.marketdata.models import Bar
from aitrados.middleware import Middleware
from aitrados.settings import load_settings

from {{ cookiecutter.package_name }}.crossover import Crossover, MovingAverage
from {{ cookiecutter.package_name }}.plugin import NAME


def test_moving_average_by_hand() -> None:
    ma = MovingAverage(3)
    assert [ma.update(v) for v in (1, 2, 3, 4)] == [None, None, 2.0, 3.0]


def test_crossover_signals_once_per_crossing() -> None:
    c = Crossover(2, 3)
    closes = [10, 9, 8, 9, 11, 12, 9, 7]
    assert [c.update(x) for x in closes] == [None, None, None, None, "buy", None, "sell", None]


def bars(closes: list[float]) -> list[Bar]:
    t0 = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    step = dt.timedelta(days=1)
    return [Bar("{{ cookiecutter.full_symbol }}", "{{ cookiecutter.interval }}", t0 + i * step, t0 + (i + 1) * step,
                c, c, c, c, 1000.0) for i, c in enumerate(closes)]


@pytest.mark.timeout(60)
def test_the_installed_plugin_trades_in_a_real_host() -> None:
    ipc = tempfile.mkdtemp(prefix="plg-", dir="/tmp")
    settings = load_settings(
        bus={"name": f"plg{time.time_ns()}", "ipc_dir": ipc, "rpc_frontend_port": 0, "rpc_backend_port": 0,
             "sub_port": 0, "pub_port": 0},
        plugins={NAME: {"fast": 2, "slow": 3}},
    )
    with Middleware(settings) as mw:
        host = PluginHost(settings, names=[NAME]).start(mw)  # found through its entry point
        try:
            assert host.registry.infos[NAME].status == "loaded"
            with mw.subscriber(["intent."]) as sub:
                time.sleep(0.2)
                for bar in bars([10, 9, 8, 9, 11, 12, 9, 7]):
                    host.context.publish(f"ohlc.{bar.full_symbol}.{bar.interval}", bar)
                got = []
                deadline = time.monotonic() + 10
                while len(got) < 2 and time.monotonic() < deadline:
                    m = sub.recv(timeout=0.2)
                    if m is not None:
                        got.append(m.data)
            assert [(o["side"], o["price"]) for o in got] == [("buy", 11.0), ("sell", 9.0)]
        finally:
            host.stop()
