"""The event vocabulary: topics built and parsed, payloads decoded from either shape, bad input named."""

from __future__ import annotations

import datetime as dt

import pytest

from aitrados.bus.protocol import decode as decode_body, encode as encode_body
from aitrados.events import (
    CALLBACKS,
    Kind,
    Topic,
    build_topic,
    decode,
    kind_of,
    parse_topic,
    topic_prefix,
)
from aitrados.marketdata.align import Snapshot
from aitrados.marketdata.models import Bar, CalendarEvent, NewsItem, bar_to_record, news_to_record
from aitrados.trading.orders import Fill, Order, Position

UTC = dt.timezone.utc
T0 = dt.datetime(2024, 1, 2, 14, 30, tzinfo=UTC)
BAR = Bar("STOCK:US:BRK.B", "DAY", T0, T0 + dt.timedelta(hours=6, minutes=30), 1, 2, 0.5, 1.5, 10.0)


def wire(obj):
    """What a subscriber gets for *obj*: msgpack out and back."""
    return decode_body(encode_body(obj))


@pytest.mark.parametrize("kind,subject,detail,topic", [
    ("bar", "STOCK:US:BRK.B", "DAY", "ohlc.STOCK:US:BRK.B.DAY"),
    ("chart", "STOCK:US:SPX", "WEEK", "chart.STOCK:US:SPX.WEEK"),
    ("mtf", "us_index", "", "mtf.us_index"),
    ("news", "STOCK:US:SPX", "", "news.STOCK:US:SPX"),
    ("calendar", "US", "CPI.MOM", "calendar.US.CPI.MOM"),
    ("order", "STOCK:US:BRK.B", "filled", "order.filled.STOCK:US:BRK.B"),
    ("fill", "STOCK:US:SPX", "", "fill.STOCK:US:SPX"),
    ("position", "STOCK:US:SPX", "", "position.STOCK:US:SPX"),
    ("signal", "STOCK:US:BRK.B", "price_action", "signal.price_action.STOCK:US:BRK.B"),
    ("step", "", "", "replay.step"),
    ("end", "", "", "replay.end"),
])
def test_topics_round_trip(kind: str, subject: str, detail: str, topic: str) -> None:
    assert build_topic(kind, subject, detail) == topic
    assert parse_topic(topic) == Topic(Kind(kind), subject, detail)
    assert kind_of(topic) is Kind(kind)
    assert topic.startswith(topic_prefix(kind))


def test_prefixes_narrow_without_matching_neighbours() -> None:
    assert topic_prefix("bar") == "ohlc."
    assert topic_prefix("bar", "STOCK:US:SPX") == "ohlc.STOCK:US:SPX."  # not STOCK:US:SPXL
    assert topic_prefix("bar", "STOCK:US:SPX", "DAY") == "ohlc.STOCK:US:SPX.DAY"
    assert topic_prefix("order", detail="rejected") == "order.rejected."
    assert topic_prefix("mtf", "g1") == "mtf.g1"
    assert build_topic("news", "") == "news.GENERAL"


def test_bad_topics_are_refused_or_not_events() -> None:
    assert parse_topic("plugins.probe.ab12") is None and kind_of("plugins.probe.ab12") is None
    assert parse_topic("replay.stepper") is None and parse_topic("ohlc") is None
    with pytest.raises(ValueError, match=r"a bar topic is ohlc.<full_symbol>.<interval>"):
        parse_topic("ohlc.SPX")
    with pytest.raises(ValueError, match=r"a order topic is order.<status>.<full_symbol>"):
        parse_topic("order.accepted")
    with pytest.raises(ValueError, match="no spaces"):
        build_topic("bar", "STOCK:US:SPX", "1 DAY")
    with pytest.raises(ValueError, match="non-empty"):
        build_topic("fill", "")
    with pytest.raises(ValueError, match="over 255 bytes"):
        build_topic("mtf", "g" * 300)
    with pytest.raises(ValueError):
        build_topic("quote", "X")


def test_every_kind_but_step_and_end_has_a_callback() -> None:
    assert set(CALLBACKS) == set(Kind) - {Kind.STEP, Kind.END}


def test_payloads_decode_from_the_wire_and_from_protocol_records() -> None:
    assert decode("bar", wire(BAR)) == BAR
    assert decode("bar", bar_to_record(BAR)) == BAR  # the AiTrados protocol shape
    assert decode("bar", BAR) is BAR
    news = NewsItem(T0, "headline", "text", "wire", "STOCK:US:SPX")
    assert decode("news", wire(news)) == news and decode("news", news_to_record(news)) == news
    ev = CalendarEvent("US", "CPI", "Consumer prices", T0, "high", 3)
    assert decode("calendar", wire(ev)) == ev
    snap = Snapshot("g", BAR.close_datetime, {(BAR.full_symbol, "DAY"): BAR}, ((BAR.full_symbol, "DAY"),))
    got = decode("mtf", wire(snap.to_record()))
    assert (got.group, got.frontier, got.bars, got.updated) == (snap.group, snap.frontier, snap.bars, snap.updated)
    chart = {"full_symbol": BAR.full_symbol, "interval": "DAY", "seq": 3, "size": 5, "count": 2, "last": BAR,
             "closed": [BAR]}
    assert decode("chart", wire(chart)) == chart
    order = Order(7, "STOCK:US:SPX", "buy", 2.0, "market", T0, strategy="s", client_id="s-1")
    fill = Fill(7, "STOCK:US:SPX", "buy", 2.0, 100.0, 0.1, T0, "s", "s-1")
    assert decode("order", wire(order)) == order and decode("fill", wire(fill)) == fill
    assert decode("position", wire(Position("STOCK:US:SPX", 2.0, 100.0))) == Position("STOCK:US:SPX", 2.0, 100.0)
    assert decode("step", wire({"step": 3, "time": T0})) == {"step": 3, "time": T0}
    assert decode("end", {"clock": "2024-01-02T14:30:00Z", "bars": 5, "step": "4"}) == {
        "clock": T0, "bars": 5, "step": 4}


@pytest.mark.parametrize("kind,data,message", [
    ("bar", {"full_symbol": "STOCK:US:SPX"}, "bar event: .*interval"),
    ("order", {"id": "seven"}, "order event: payload is not a Order"),
    ("fill", [1, 2], "fill event: payload is not a Fill"),
    ("chart", {"seq": 1}, "chart event: chart message lacks full_symbol, interval"),
    ("mtf", {"group": "g"}, "mtf event: snapshot record lacks frontier, bars"),
    ("step", "3", "step event: replay message is a str"),
])
def test_bad_payloads_are_named(kind: str, data, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode(kind, data)


def test_the_module_imports_nothing_from_aitrados_at_import_time() -> None:
    import subprocess
    import sys

    code = ("import sys, aitrados.events; "
            "print(sorted(m for m in sys.modules if m.startswith('aitrados.') and m != 'aitrados.events'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    # the package root (aitrados/__init__) is imported by Python itself; nothing below it is
    assert "aitrados.trading" not in out and "aitrados.marketdata" not in out, out
