"""Records, symbols, timestamps and interval/session boundaries."""

import datetime as dt

import msgspec
import pytest

from aitrados.marketdata.intervals import (
    CRYPTO_GLOBAL,
    INTERVALS,
    US_STOCK_RTH,
    bar_close,
    bar_open,
    next_bar_close,
    normalize_interval,
    session_for,
)
from aitrados.marketdata.models import (
    Bar,
    bar_from_record,
    bar_problems,
    bar_to_record,
    event_from_record,
    event_to_record,
    news_from_record,
    news_to_record,
    normalize_full_symbol,
    parse_full_symbol,
    parse_timestamp,
)

UTC = dt.timezone.utc
NY = US_STOCK_RTH.zone


def test_full_symbol_parsing() -> None:
    assert parse_full_symbol("stock:us:tsla") == ("STOCK", "US", "TSLA")
    assert normalize_full_symbol(" crypto:GLOBAL:btcusd ") == "CRYPTO:GLOBAL:BTCUSD"
    with pytest.raises(ValueError, match="expected ASSET:COUNTRY:SYMBOL"):
        parse_full_symbol("AAPL")
    with pytest.raises(ValueError, match="asset 'BOND' is not one of"):
        parse_full_symbol("BOND:US:X")
    with pytest.raises(ValueError, match="expected ASSET:COUNTRY:SYMBOL"):
        parse_full_symbol("STOCK::AAPL")


@pytest.mark.parametrize("text", ["2025-07-18T00:30:00Z", "2025-07-18T00:30:00+00:00", "2025-07-18 00:30:00",
                                  "2025-07-18T02:30:00+02:00", "2025-07-18T00:30:00"])
def test_timestamps_normalise_to_utc(text: str) -> None:
    assert parse_timestamp(text) == dt.datetime(2025, 7, 18, 0, 30, tzinfo=UTC)
    assert parse_timestamp(text).tzinfo is UTC


def test_timestamp_errors_and_epochs() -> None:
    assert parse_timestamp("2025-07-18") == dt.datetime(2025, 7, 18, tzinfo=UTC)
    assert parse_timestamp(1752798600) == parse_timestamp(1752798600_000) == dt.datetime(2025, 7, 18, 0, 30, tzinfo=UTC)
    with pytest.raises(ValueError, match="expected ISO 8601"):
        parse_timestamp("18/07/2025 noon")


def test_bar_record_round_trip() -> None:
    rec = {"asset_schema": "crypto", "interval": "1m", "country_iso_code": "GLOBAL", "exchange": "GLOBAL",
           "symbol": "BTCUSD", "datetime": "2025-07-18T00:30:00Z", "open": "119584.44", "high": 119600,
           "low": 119500.5, "close": 119590, "volume": 3.0001965, "vwap": 79717.0433988}
    b = bar_from_record(rec)
    assert b.full_symbol == "CRYPTO:GLOBAL:BTCUSD" and b.interval == "1M" and b.closed
    assert b.close_datetime == dt.datetime(2025, 7, 18, 0, 31, tzinfo=UTC)  # computed from the interval
    out = bar_to_record(b)
    assert out["datetime"] == "2025-07-18T00:30:00+00:00" and out["close_datetime"] == "2025-07-18T00:31:00+00:00"
    assert list(out)[:5] == ["asset_schema", "interval", "country_iso_code", "exchange", "symbol"]
    assert bar_from_record(out) == b
    # msgpack on the wire round-trips the struct exactly
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(b), type=Bar) == b


def test_bar_record_errors() -> None:
    with pytest.raises(ValueError, match="missing field 'interval'"):
        bar_from_record({"full_symbol": "STOCK:US:SPX", "datetime": "2018-01-02", "open": 1, "high": 1, "low": 1, "close": 1})
    with pytest.raises(ValueError, match="'high' is not a number"):
        bar_from_record({"full_symbol": "STOCK:US:SPX", "interval": "DAY", "datetime": "2018-01-02T14:30:00Z",
                         "open": 1, "high": "x", "low": 1, "close": 1})
    with pytest.raises(ValueError, match="no symbol"):
        bar_from_record({"interval": "DAY", "datetime": "2018-01-02", "open": 1, "high": 1, "low": 1, "close": 1})
    t = dt.datetime(2018, 1, 2, tzinfo=UTC)
    assert bar_problems(Bar("STOCK:US:SPX", "1M", t, t, 1.0, 0.5, 1.0, 1.0, -1.0)) == [
        "high 0.5 < low 1.0", "negative volume -1.0", f"close_datetime {t} not after datetime {t}"]


def test_news_and_event_records() -> None:
    n = news_from_record({"published_date": "2025-07-01T02:57:14+00:00", "title": "t", "asset_name": "stock",
                          "country_iso_code": "US", "symbol": "TSLA", "sentiment_score": None})
    assert n.full_symbol == "STOCK:US:TSLA" and n.sentiment_score is None
    assert news_from_record(news_to_record(n)).published_date == n.published_date
    e = event_from_record({"country_iso_code": "us", "event_code": "cpi_yoy", "event_timestamp": "2024-08-05T13:00:00Z",
                           "impact": "HIGH", "importance": "3", "actual_value": "2.9%", "forecast_value": ""})
    assert (e.country_iso_code, e.event_code, e.impact, e.importance, e.actual_value, e.forecast_value) == (
        "US", "CPI_YOY", "high", 3, 2.9, None)
    assert event_to_record(e)["event_timestamp"] == "2024-08-05T13:00:00Z"
    with pytest.raises(ValueError, match="'impact' must be low, medium or high"):
        event_from_record({"country_iso_code": "US", "event_code": "X", "event_timestamp": "2024-01-01", "impact": "huge"})
    with pytest.raises(ValueError, match="missing field 'title'"):
        news_from_record({"published_date": "2025-07-01"})


def test_interval_names() -> None:
    assert normalize_interval("5m") == "5M" and normalize_interval("day") == "DAY"
    with pytest.raises(ValueError, match="1M 3M 5M 10M 15M 30M 60M 120M 240M DAY WEEK MON"):
        normalize_interval("1H")
    assert len(INTERVALS) == 12


def ny(y: int, mo: int, d: int, h: int, mi: int) -> dt.datetime:
    return dt.datetime(y, mo, d, h, mi, tzinfo=NY).astimezone(UTC)


def test_session_anchoring_us_stocks() -> None:
    s = US_STOCK_RTH
    nyse = session_for("stock:us:aapl")  # the same hours, with the exchange calendar's closures
    assert (nyse.tz, nyse.open, nyse.close) == (s.tz, s.open, s.close) and dt.date(2018, 12, 25) in nyse.holidays
    assert session_for("stock:us:spx") is nyse and session_for("CRYPTO:GLOBAL:BTCUSD") is CRYPTO_GLOBAL
    # 60M anchored at 09:30 New York, across the 2018-03-11 DST change
    for day in (9, 12):
        assert bar_open(ny(2018, 3, day, 10, 29), "60M", s) == ny(2018, 3, day, 9, 30)
        assert bar_open(ny(2018, 3, day, 15, 45), "60M", s) == ny(2018, 3, day, 15, 30)
        assert bar_close(ny(2018, 3, day, 15, 30), "60M", s) == ny(2018, 3, day, 16, 0)  # cut at the close
        assert bar_open(ny(2018, 3, day, 14, 0), "240M", s) == ny(2018, 3, day, 13, 30)
    assert bar_open(ny(2018, 3, 12, 16, 20), "60M", s) == ny(2018, 3, 12, 16, 0)  # after hours: anchored to close
    # calendar bars: left label at the session open, close at the last trading day's close
    assert bar_open(ny(2018, 3, 14, 11, 0), "DAY", s) == ny(2018, 3, 14, 9, 30)
    assert bar_open(ny(2018, 3, 14, 11, 0), "WEEK", s) == ny(2018, 3, 12, 9, 30)
    assert bar_close(ny(2018, 3, 12, 9, 30), "WEEK", s) == ny(2018, 3, 16, 16, 0)
    assert bar_open(ny(2018, 9, 14, 11, 0), "MON", s) == ny(2018, 9, 1, 9, 30)  # a Saturday: calendar label
    assert bar_close(ny(2018, 9, 1, 9, 30), "MON", s) == ny(2018, 9, 28, 16, 0)  # Sep 30 is a Sunday
    good_friday = s.with_holidays({dt.date(2018, 3, 30)})
    assert bar_close(ny(2018, 3, 26, 9, 30), "WEEK", good_friday) == ny(2018, 3, 29, 16, 0)


def test_next_bar_close_skips_closed_market() -> None:
    s = US_STOCK_RTH.with_holidays({dt.date(2018, 7, 4)})
    assert next_bar_close(ny(2018, 7, 3, 16, 0), "1M", s) == ny(2018, 7, 5, 9, 31)
    assert next_bar_close(ny(2018, 7, 6, 15, 0), "60M", s) == ny(2018, 7, 6, 15, 30)
    assert next_bar_close(ny(2018, 7, 6, 15, 30), "60M", s) == ny(2018, 7, 6, 16, 0)
    assert next_bar_close(ny(2018, 7, 3, 16, 0), "DAY", s) == ny(2018, 7, 5, 16, 0)
    assert next_bar_close(dt.datetime(2018, 7, 7, 23, 59, tzinfo=UTC), "5M", CRYPTO_GLOBAL) == dt.datetime(2018, 7, 8, 0, 0, tzinfo=UTC)
