"""Standing aside around high-impact calendar events in a real runtime (previews a day ahead + releases).

The event times come straight from the bundled calendar file; the bars from the bus.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from aitrados.runtime import Runtime
from aitrados_strategies.sma_cross import SmaCross

from conftest import PATIENT_HEARTBEATS, bus_settings, joined_subscriber

pytestmark = pytest.mark.timeout(180)
ROOT = Path(__file__).resolve().parent.parent
SPX = "STOCK:US:SPX"
EVENTS = [dt.datetime.fromisoformat(e["event_timestamp"].replace("Z", "+00:00"))
          for e in json.loads((ROOT / "core" / "data" / "calendar" / "US_2018_sample.json").read_text())
          if e["impact"] == "high"]


def run(ipc_dir: str, tmp: Path, strategy: SmaCross, calendar: list | None = None) -> tuple[list[dict], list[dict]]:
    s = bus_settings(ipc_dir, **PATIENT_HEARTBEATS)
    s.trading.report_dir = str(tmp)
    rt = Runtime(s, plugins=[], strategies=[strategy], start_clock=False).start()
    try:
        sub = joined_subscriber(rt.mw, [f"ohlc.{SPX}.DAY", "fill.", "calendar.", "replay.end"])
        rt.start_replay()
        bars, fills = [], []
        while (m := sub.recv(timeout=60)) is not None and m.topic != "replay.end":
            if m.topic.startswith("calendar."):
                if calendar is not None:
                    calendar.append(m.data)
                continue
            (fills if m.topic.startswith("fill.") else bars).append(m.data)
        assert m is not None and sub.stats.missed == 0
        return [b for b in bars if b["closed"]], fills
    finally:
        rt.stop()


def entries_near_events(bars: list[dict], fills: list[dict]) -> list[dt.datetime]:
    """Signal-bar closes of buy fills that lie within [event - 24h, event + 12h] of a high-impact event."""
    opens = {b["datetime"]: i for i, b in enumerate(bars)}
    near = []
    for f in fills:
        if f["side"] != "buy":
            continue
        signal_close = bars[opens[f["datetime"]] - 1]["close_datetime"]
        if any(e - dt.timedelta(hours=24) <= signal_close <= e + dt.timedelta(hours=12) for e in EVENTS):
            near.append(signal_close)
    return near


def test_stand_aside_skips_entries_before_and_after_high_impact_events(ipc_dir: str, tmp_path: Path) -> None:
    plain_bars, plain_fills = run(ipc_dir, tmp_path / "plain", SmaCross(quantity=10))
    careful = SmaCross(quantity=10, stand_aside_impact="high")
    calendar: list[dict] = []
    bars, fills = run(ipc_dir, tmp_path / "careful", careful, calendar)
    assert entries_near_events(plain_bars, plain_fills), "the plain run must enter near an event, else this proves nothing"
    assert entries_near_events(bars, fills) == []
    assert careful.skipped_entries > 0
    # the "before" side: each high-impact event was announced a day ahead, outcome masked, before its release
    for e in EVENTS:
        kinds = [(c["preview_interval"], c["actual_value"]) for c in calendar if c["event_timestamp"] == e]
        assert kinds[0] == ("1DAY", None) and kinds[-1][0] == "REAL_TIME", (e, kinds)
    assert careful.event_times.count(EVENTS[0]) == 2  # the strategy knew of it from the preview on
