"""The macro and breaking_news plugins in a real replay of 2018 (S&P 500 days, the calendar and
news samples): what they publish on signal.macro.* / signal.news.* equals the pure modules fed with
the events the bus carried."""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec
import pytest

from aitrados.marketdata.models import CalendarEvent, NewsItem
from aitrados.runtime import Runtime
from aitrados.signals.macro import MacroSurprise
from aitrados.signals.news import NewsScorer
from aitrados_strategies.rsi_reversion import RsiReversion

from conftest import bus_settings
from replay_collect import replay_and_collect

pytest.importorskip("vaderSentiment")
SPX = "STOCK:US:SPX"


def rows(data: Any) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in data.items()}


@pytest.mark.timeout(180)
def test_macro_and_news_plugins_publish_what_the_pure_modules_compute(ipc_dir: str, tmp_path: Any) -> None:
    s = bus_settings(ipc_dir)
    md = s.marketdata
    md.provider, md.replay_symbols = "replay", []
    md.replay_start, md.replay_end = dt.datetime(2018, 1, 1, tzinfo=dt.timezone.utc), "data_end"
    s.trading.report_dir = str(tmp_path / "report")
    s.plugins["macro"] = {"symbols": [SPX, "STOCK:US:IXIC"], "min_history": 3}
    rt = Runtime(s, plugins=["macro", "breaking_news"], strategies=[RsiReversion(SPX, "DAY", quantity=1)],
                 start_clock=False).start()
    events: list[Any] = []
    news: list[Any] = []
    signals: dict[str, list[Any]] = {"macro": [], "news": []}

    def take(m: Any) -> None:
        if m.topic.startswith("signal."):
            signals[m.topic.split(".")[1]].append((m.topic, m.data))
        elif m.topic.startswith("calendar."):
            events.append(msgspec.convert(m.data, CalendarEvent))
        else:
            news.append(msgspec.convert(m.data, NewsItem))

    try:
        replay_and_collect(rt, ["calendar.", "news.", "signal."], take,
                           lambda: len(signals["macro"]) >= want_macro(events) and len(signals["news"]) >= len(news))
    finally:
        rt.stop()
    assert sum(e.actual_value is not None for e in events) >= 20 and len(news) >= 8
    macro = MacroSurprise([SPX, "STOCK:US:IXIC"], min_history=3)
    want = [(x.topic, x.kind, x.time.isoformat(), x.value) for e in events for x in macro.update(e)]
    got = [(t, d["kind"], rows(d)["time"], d["value"]) for t, d in signals["macro"]]
    assert got == want
    assert {k for _, k, _, _ in got} == {"surprise", "stand_aside"}
    assert {t for t, *_ in got} == {f"signal.macro.{SPX}", "signal.macro.STOCK:US:IXIC"}
    scorer = NewsScorer()
    want_n = [(x.topic, x.time.isoformat(), x.score, x.data["source"]) for n in news for x in scorer.update(n)]
    got_n = [(t, rows(d)["time"], d["score"], d["data"]["source"]) for t, d in signals["news"]]
    assert got_n == want_n and len(got_n) >= 8


def want_macro(events: list[Any]) -> int:
    m = MacroSurprise([SPX, "STOCK:US:IXIC"], min_history=3)
    return sum(len(m.update(e)) for e in events)
