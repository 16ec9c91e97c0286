"""Macro surprises equal a pandas reference over the bundled 2018 calendar sample; stand-aside windows."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest

from aitrados.marketdata.loader import bundled_data_dir
from aitrados.marketdata.models import CalendarEvent
from aitrados.signals.macro import MacroSurprise

SPX = "STOCK:US:SPX"


def sample_events() -> list[CalendarEvent]:
    rows = json.loads((bundled_data_dir() / "calendar" / "US_2018_sample.json").read_text())
    evs = [CalendarEvent(**{**r, "event_timestamp": dt.datetime.fromisoformat(r["event_timestamp"].replace("Z", "+00:00"))})
           for r in rows]
    return sorted(evs, key=lambda e: e.event_timestamp)


def test_surprises_equal_the_pandas_reference() -> None:
    evs = sample_events()
    m = MacroSurprise([SPX, "STOCK:DE:DAX"], min_history=3)
    got = [(s.time, s.data["event_code"], round(s.value, 9), s.data["normalised"], round(s.score, 9))
           for e in evs for s in m.update(e)]
    df = pd.DataFrame([{"t": e.event_timestamp, "code": e.event_code, "a": e.actual_value, "f": e.forecast_value}
                       for e in evs]).dropna(subset=["a", "f"])
    df["s"] = df.a - df.f
    g = df.groupby("code")["s"]
    n_before = g.cumcount()
    spread = g.transform(lambda x: x.expanding().std(ddof=1).shift(1))
    norm = (n_before >= 3) & (spread > 0)
    z = np.where(norm, df.s / spread.where(norm, 1.0), np.where(df.f != 0, df.s / df.f.abs().where(df.f != 0, 1.0), 0.0))
    want = [(r.t, r.code, round(zz, 9), bool(nn), round(max(-1.0, min(1.0, zz / 3)), 9))
            for r, zz, nn in zip(df.itertuples(), z, norm)]
    assert got == want
    assert sum(w[3] for w in want) >= 10, "most sample releases are normalised by their code's history"
    assert any(w[4] > 0 for w in want) and any(w[4] < 0 for w in want)


def test_targets_inverse_codes_and_stand_aside() -> None:
    t = dt.datetime(2018, 3, 2, 13, 30, tzinfo=dt.timezone.utc)
    m = MacroSurprise([SPX, "STOCK:US:IXIC", "STOCK:DE:DAX"], min_history=2)
    hist = [CalendarEvent("US", "UNEMPLOYMENT_RATE", "Unemployment", t + dt.timedelta(days=30 * i), "high", 3,
                          actual_value=a, forecast_value=4.0) for i, a in enumerate([4.1, 3.9, 4.3])]
    out = [m.update(e) for e in hist]
    assert [s.full_symbol for s in out[0]] == [SPX, "STOCK:US:IXIC"], "published for the country's symbols"
    last = out[2][0]
    assert last.data["normalised"] and last.value > 0 and last.score < 0, "higher unemployment is bearish"
    preview = CalendarEvent("US", "NONFARM_PAYROLLS", "Payrolls", t, "high", 3, preview_interval="1DAY")
    sa = MacroSurprise([], stand_aside_impact="high").update(preview)
    assert [(s.full_symbol, s.kind, s.time) for s in sa] == [("*", "stand_aside", t - dt.timedelta(hours=24))]
    assert sa[0].data["until"] == (t + dt.timedelta(hours=12)).isoformat()
    low = CalendarEvent("US", "X", "x", t, "low", 1)
    assert MacroSurprise([]).update(low) == []
    with pytest.raises(ValueError, match="min_history"):
        MacroSurprise([], min_history=1)
    with pytest.raises(ValueError, match="stand_aside_impact"):
        MacroSurprise([], stand_aside_impact="huge")
