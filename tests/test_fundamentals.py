"""Split/dividend back-adjustment equals a pandas reference on the sample corporate actions; the
fundamentals plugin serves adjusted chart windows of a real middleware."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import msgspec
import numpy as np
import pandas as pd
import pytest

from aitrados.bus import RPCClient
from aitrados.marketdata.corporate_actions import adjust_bars, load_corporate_actions
from aitrados.marketdata.loader import bundled_bar_files, bundled_data_dir, load_bars
from aitrados.marketdata.models import Bar
from aitrados.runtime import Runtime

from conftest import bus_settings

SAMPLE = bundled_data_dir() / "fundamentals_sample" / "US_2018_synthetic_actions.json"
AAPL = "STOCK:US:AAPL"


def aapl_days() -> list[Bar]:
    """Real 2018 S&P 500 days relabelled AAPL: prices to adjust around the sample's ex-dates."""
    bars = load_bars(bundled_bar_files()[("STOCK:US:SPX", "DAY")]).bars
    return [msgspec.structs.replace(b, full_symbol=AAPL) for b in bars if b.datetime.year == 2018]


@pytest.mark.parametrize("splits,dividends", [(True, True), (True, False), (False, True)])
def test_adjustment_equals_the_pandas_reference(splits: bool, dividends: bool) -> None:
    bars = aapl_days()
    actions = load_corporate_actions(SAMPLE)
    got = adjust_bars(bars, actions, splits=splits, dividends=dividends)
    df = pd.DataFrame({"d": [b.datetime.date() for b in bars], "c": [b.close for b in bars],
                       "o": [b.open for b in bars], "v": [b.volume for b in bars]})
    pf = np.ones(len(df))
    vf = np.ones(len(df))
    for r in json.loads(SAMPLE.read_text()):
        if r["symbol"] != "AAPL" or (r["action_type"] == "split" and not splits) or \
                (r["action_type"] == "dividend" and not dividends):
            continue
        ex = dt.date.fromisoformat(r["ex_date"])
        before = (df.d < ex).to_numpy()
        if r["adjustment_factor"] is not None:
            f = float(r["adjustment_factor"])
        elif r["action_type"] == "split":
            f = r["split_from"] / r["split_to"]
        else:
            f = 1 - r["cash_amount"] / df.c[before].iloc[-1]
        pf[before] *= f
        if r["action_type"] == "split":
            vf[before] /= f
    assert np.allclose([b.close for b in got], df.c * pf, rtol=1e-12)
    assert np.allclose([b.open for b in got], df.o * pf, rtol=1e-12)
    assert np.allclose([b.volume for b in got], df.v * vf, rtol=1e-12)
    assert (pf != 1).any()
    assert got[-1] == bars[-1], "bars after the last ex-date are unchanged"
    assert adjust_bars([msgspec.structs.replace(b, full_symbol="STOCK:US:MSFT") for b in bars[:5]], actions) == \
        [msgspec.structs.replace(b, full_symbol="STOCK:US:MSFT") for b in bars[:5]], "other symbols untouched"


def test_bad_corporate_action_files_say_what_is_wrong(tmp_path: Path) -> None:
    f = tmp_path / "ca.json"
    f.write_text(json.dumps([{"country_iso_code": "US", "symbol": "X", "action_type": "merger", "ex_date": "2018-01-02"}]))
    with pytest.raises(ValueError, match="corporate action #0"):
        load_corporate_actions(f)
    f.write_text(json.dumps([{"country_iso_code": "US", "symbol": "AAPL", "action_type": "split",
                              "ex_date": "2018-06-01"}]))
    with pytest.raises(ValueError, match="needs split_from and split_to"):
        adjust_bars(aapl_days(), load_corporate_actions(f))


@pytest.mark.timeout(120)
def test_fundamentals_plugin_serves_adjusted_windows(ipc_dir: str, tmp_path: Path) -> None:
    s = bus_settings(ipc_dir)
    md = s.marketdata
    md.provider, md.replay_symbols = "replay", [AAPL]
    md.replay_days, md.replay_history_days = 0.05, 5.0
    s.trading.report_dir = str(tmp_path / "report")
    rt = Runtime(s, plugins=["fundamentals"], exit_at_end=False).start()
    try:
        with RPCClient(rt.mw.endpoints().rpc_frontend, bus=s.bus, context=rt.mw.context, timeout=30) as c:
            acts = c.call("fundamentals", "corporate_actions", full_symbol="stock:us:aapl")
            assert [a["action_type"] for a in acts] == ["dividend", "split", "dividend"]
            raw = [msgspec.convert(b, Bar) for b in c.call("chart", "window", full_symbol=AAPL, interval="60M",
                                                            size=100, closed_only=True)]
            adj = [msgspec.convert(b, Bar) for b in c.call("fundamentals", "adjusted_window", full_symbol=AAPL,
                                                            interval="60M", size=100, closed_only=True)]
            ref = c.call("fundamentals", "reference", full_symbol=AAPL)
            with pytest.raises(Exception, match="action_type"):
                c.call("fundamentals", "corporate_actions", full_symbol=AAPL, action_type="merger")
    finally:
        rt.stop()
    ex = dt.date(2018, 12, 20)  # the sample's dividend with adjustment_factor 0.995
    assert any(b.datetime.date() < ex for b in raw) and any(b.datetime.date() >= ex for b in raw)
    by_time = {b.datetime: b for b in raw}
    same = [b for b in adj if b.datetime in by_time]  # the replay may close a bar between the two calls
    assert len(same) >= max(15, len(adj) - 1)
    for b in same:
        r = by_time[b.datetime]
        assert b.close == pytest.approx(r.close * (0.995 if b.datetime.date() < ex else 1.0), rel=1e-12)
    assert ref and ref.get("symbol", "AAPL").upper().endswith("AAPL")
