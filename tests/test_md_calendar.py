"""Sessions against independent facts: NYSE holidays and early closes (from exchange_calendars),
the 24/5 FX week (Sunday to Friday 17:00 New York), 24/7 crypto, generated prices by asset class,
and the replay server's /holiday/list agreeing with the generated bars."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest

from aitrados.marketdata.calendars import stock_session
from aitrados.marketdata.chart import ChartWindow, resample_bars
from aitrados.marketdata.generator import generate_bars, price_model
from aitrados.marketdata.intervals import (
    CRYPTO_GLOBAL,
    FOREX_GLOBAL,
    US_STOCK_RTH,
    Session,
    bar_close,
    bar_open,
    next_bar_close,
    session_for,
)
from aitrados.marketdata.loader import load_bars
from aitrados.marketdata.replay_store import ReplayStore

UTC = dt.timezone.utc
NY = US_STOCK_RTH.zone
EURUSD = "FOREX:GLOBAL:EURUSD"


def ny(y: int, mo: int, d: int, h: int, mi: int = 0) -> dt.datetime:
    return dt.datetime(y, mo, d, h, mi, tzinfo=NY).astimezone(UTC)


def test_nyse_calendar_facts() -> None:
    s = session_for("STOCK:US:AAPL")
    for closed in ("2018-12-25", "2001-09-11", "2001-09-12", "2001-09-13", "2001-09-14", "2007-01-02",
                   "2012-10-29", "2012-10-30", "2018-12-05", "2018-03-30", "2018-07-04"):
        assert not s.is_trading_day(dt.date.fromisoformat(closed)), closed
    for open_ in ("2018-12-24", "2018-12-26", "2001-09-17", "2012-10-31"):
        assert s.is_trading_day(dt.date.fromisoformat(open_)), open_
    assert s.close_on(dt.date(2018, 12, 24)) == dt.time(13) and s.close_on(dt.date(2018, 12, 26)) == dt.time(16)
    assert s.close_on(dt.date(2018, 11, 23)) == dt.time(13) and s.close_on(dt.date(2018, 7, 3)) == dt.time(13)
    assert not s.is_open(ny(2018, 12, 24, 13, 0)) and s.is_open(ny(2018, 12, 24, 12, 59))
    # the early close cuts the intraday and the DAY bars, and the next bar is due on the 26th
    assert bar_close(ny(2018, 12, 24, 12, 30), "60M", s) == ny(2018, 12, 24, 13)
    assert bar_close(ny(2018, 12, 24, 9, 30), "240M", s) == ny(2018, 12, 24, 13)
    assert bar_close(ny(2018, 12, 24, 9, 30), "DAY", s) == ny(2018, 12, 24, 13)
    assert next_bar_close(ny(2018, 12, 24, 13), "1M", s) == ny(2018, 12, 26, 9, 31)
    assert next_bar_close(ny(2018, 12, 24, 13), "DAY", s) == ny(2018, 12, 26, 16)
    # the week of Christmas 2018 ends on Friday the 28th; the week of 9/11 had one session (Monday)
    assert bar_close(ny(2018, 12, 24, 9, 30), "WEEK", s) == ny(2018, 12, 28, 16)
    assert bar_close(ny(2001, 9, 10, 9, 30), "WEEK", s) == ny(2001, 9, 10, 16)
    assert stock_session("us") is s and stock_session("UK").is_trading_day(dt.date(2018, 12, 25)) is False
    with pytest.raises(ValueError, match="no stock session"):
        stock_session("XX")


def test_generator_follows_the_calendar() -> None:
    bars = generate_bars("STOCK:US:SPX", "2018-12-21", "2018-12-29", seed=7)
    per_day = Counter(b.datetime.astimezone(NY).date() for b in bars)
    assert per_day == {dt.date(2018, 12, 21): 390, dt.date(2018, 12, 24): 210, dt.date(2018, 12, 26): 390,
                       dt.date(2018, 12, 27): 390, dt.date(2018, 12, 28): 390}
    eve = [b for b in bars if b.datetime.astimezone(NY).date() == dt.date(2018, 12, 24)]
    assert eve[-1].close_datetime == ny(2018, 12, 24, 13)
    assert generate_bars("STOCK:US:SPX", "2001-09-11", "2001-09-15") == []
    # a chart window closes the half day's 60M and DAY bars with its last minute, at 13:00
    w = ChartWindow("STOCK:US:SPX", "60M", size=20)
    d = ChartWindow("STOCK:US:SPX", "DAY", size=5)
    for b in eve:
        w.update(b)
        d.update(b)
    assert w.closed_bars()[-1].close_datetime == ny(2018, 12, 24, 13) and w.live_bar() is None
    assert [(x.datetime, x.close_datetime, x.close) for x in d.closed_bars()] == [(ny(2018, 12, 24, 9, 30), ny(2018, 12, 24, 13), eve[-1].close)]
    # the bare hours (no calendar) still trade every weekday: the calendar is what removes them
    assert len(generate_bars("STOCK:US:SPX", "2018-12-25", "2018-12-26", session=US_STOCK_RTH)) == 390


def test_fx_week_runs_sunday_to_friday_17_new_york() -> None:
    s = session_for(EURUSD)
    assert s is FOREX_GLOBAL and session_for("FUTURE:US:ES") is FOREX_GLOBAL
    # summer (EDT): 21:00 UTC; winter (EST): 22:00 UTC
    assert not s.is_open(dt.datetime(2018, 6, 3, 20, 59, tzinfo=UTC)) and s.is_open(dt.datetime(2018, 6, 3, 21, 0, tzinfo=UTC))
    assert s.is_open(dt.datetime(2018, 6, 8, 20, 59, tzinfo=UTC)) and not s.is_open(dt.datetime(2018, 6, 8, 21, 0, tzinfo=UTC))
    assert not s.is_open(dt.datetime(2018, 12, 2, 21, 30, tzinfo=UTC)) and s.is_open(dt.datetime(2018, 12, 2, 22, 0, tzinfo=UTC))
    assert s.day_of(dt.datetime(2018, 6, 3, 22, 0, tzinfo=UTC)) == dt.date(2018, 6, 4)  # Sunday evening is Monday
    # DAY bars run 17:00 to 17:00 New York, labelled by the day they close; WEEK from Sunday 17:00
    assert bar_open(dt.datetime(2018, 6, 4, 12, tzinfo=UTC), "DAY", s) == dt.datetime(2018, 6, 3, 21, tzinfo=UTC)
    assert bar_close(dt.datetime(2018, 6, 7, 21, tzinfo=UTC), "DAY", s) == dt.datetime(2018, 6, 8, 21, tzinfo=UTC)
    assert bar_open(dt.datetime(2018, 6, 6, 12, tzinfo=UTC), "WEEK", s) == dt.datetime(2018, 6, 3, 21, tzinfo=UTC)
    assert bar_close(dt.datetime(2018, 6, 3, 21, tzinfo=UTC), "WEEK", s) == dt.datetime(2018, 6, 8, 21, tzinfo=UTC)
    # 240M bars start at the roll: 17:00, 21:00, 01:00 ... New York; the Friday one closes at the close
    assert bar_open(dt.datetime(2018, 6, 8, 19, 30, tzinfo=UTC), "240M", s) == dt.datetime(2018, 6, 8, 17, tzinfo=UTC)
    assert bar_close(dt.datetime(2018, 6, 8, 17, tzinfo=UTC), "240M", s) == dt.datetime(2018, 6, 8, 21, tzinfo=UTC)
    assert next_bar_close(dt.datetime(2018, 6, 8, 21, tzinfo=UTC), "60M", s) == dt.datetime(2018, 6, 3 + 7, 22, tzinfo=UTC)
    # a week of generated EURUSD: 5 x 1440 minutes, first on Sunday 21:00 UTC, last ending Friday 21:00
    bars = generate_bars(EURUSD, "2018-06-02", "2018-06-10", seed=7)
    assert len(bars) == 5 * 1440
    assert bars[0].datetime == dt.datetime(2018, 6, 3, 21, tzinfo=UTC)
    assert bars[-1].close_datetime == dt.datetime(2018, 6, 8, 21, tzinfo=UTC)
    with pytest.raises(ValueError, match="early close"):
        Session("bad", "UTC", dt.time(0), dt.time(0), early_closes=frozenset({(dt.date(2018, 1, 2), dt.time(12))}))


def test_fx_weekend_is_no_gap_and_a_missing_hour_is(tmp_path) -> None:
    bars = resample_bars(generate_bars(EURUSD, "2018-05-01", "2018-06-30", seed=3), "60M", FOREX_GLOBAL)
    rows = ["datetime,open,high,low,close,volume"] + [
        f"{b.datetime.isoformat()},{b.open},{b.high},{b.low},{b.close},{b.volume}" for b in bars]
    path = tmp_path / "FOREX_GLOBAL_EURUSD_60M.csv"
    path.write_text("\n".join(rows) + "\n")
    res = load_bars(path)
    assert len(res.bars) == len(bars) and res.issues == []  # 8 weekends, no "gap"
    del rows[100]
    path.write_text("\n".join(rows) + "\n")
    assert [i.kind for i in load_bars(path).issues] == ["gap"]


def test_crypto_trades_every_day() -> None:
    bars = generate_bars("CRYPTO:GLOBAL:BTCUSD", "2018-12-22", "2018-12-27", seed=7)
    assert len(bars) == 5 * 1440 and session_for("CRYPTO:GLOBAL:BTCUSD") is CRYPTO_GLOBAL


def test_generated_prices_by_asset_class() -> None:
    """EURUSD near 1.1 with 5 decimals (pip = 0.0001), USDJPY near 110 with 3, BTCUSD in its 2018 range."""
    for seed in (0, 7, 99):
        eur = generate_bars(EURUSD, "2018-01-01", "2018-12-31", seed=seed)[::97]
        assert 1.0 < min(b.low for b in eur) and max(b.high for b in eur) < 1.35
        assert all(round(b.close, 5) == b.close for b in eur)
        assert len({round(b.close, 4) for b in eur}) > 100  # moves by pips, not stuck on a grid
        jpy = generate_bars("FOREX:GLOBAL:USDJPY", "2018-06-01", "2018-06-09", seed=seed)
        assert 95 < min(b.low for b in jpy) and max(b.high for b in jpy) < 125
        assert all(round(b.close, 3) == b.close for b in jpy)
        btc = generate_bars("CRYPTO:GLOBAL:BTCUSD", "2018-01-01", "2018-12-31", seed=seed)[::397]
        assert 3000 < min(b.low for b in btc) and max(b.high for b in btc) < 20000
    assert price_model("STOCK:US:AAPL").decimals == 2 and 20 <= price_model("STOCK:US:AAPL").level <= 520
    assert 0.5 <= price_model("FOREX:GLOBAL:ABCDEF").level <= 2.0
    store = ReplayStore(generated_symbols=[EURUSD, "FOREX:GLOBAL:USDJPY", "CRYPTO:GLOBAL:BTCUSD"], bundled=False,
                        days=0.1, history_days=0.1)
    ticks = {fs: (store.reference(fs)["price_precision"], store.reference(fs)["tick_size"]) for fs in store.symbols()}
    assert ticks == {EURUSD: (5, 0.00001), "FOREX:GLOBAL:USDJPY": (3, 0.001), "CRYPTO:GLOBAL:BTCUSD": (2, 0.01)}
    assert 1.0 < store.latest_bars(EURUSD, "1M", store.end, 1)[0].close < 1.35


def test_holiday_list_agrees_with_the_generated_bars() -> None:
    store = ReplayStore(generated_symbols=["STOCK:US:AAPL"], start=dt.datetime(2018, 12, 26, 14, 30, tzinfo=UTC),
                        days=1, history_days=6)
    by_day = {h["calendar_date"]: h for h in store.holidays if h["country_iso_code"] == "US"}
    assert by_day["2018-12-25"]["session_template"] == "CLOSED" and by_day["2018-12-25"]["holiday_code"] == "CHRISTMAS_DAY"
    eve = by_day["2018-12-24"]
    assert (eve["session_template"], eve["holiday_code"]) == ("EARLY_CLOSE", "CHRISTMAS_EVE")
    assert eve["close_timestamp"] == "2018-12-24T18:00:00+00:00"
    assert by_day["2001-09-11"]["holiday_code"] == "UNSCHEDULED_CLOSURE" and "2001-09-17" not in by_day
    m1 = store.minute_bars("STOCK:US:AAPL")
    days = Counter(b.datetime.astimezone(NY).date().isoformat() for b in m1)
    for d, n in days.items():  # every generated day is a session the list does not close
        assert by_day.get(d, {}).get("session_template") != "CLOSED"
        assert n == (210 if by_day.get(d, {}).get("session_template") == "EARLY_CLOSE" else 390)
    assert "2018-12-25" not in days and days["2018-12-24"] == 210
    last_eve = max(b.close_datetime for b in m1 if b.datetime.astimezone(NY).date() == dt.date(2018, 12, 24))
    assert last_eve.isoformat() == eve["close_timestamp"]
    closed = {d for d, h in by_day.items() if h["session_template"] == "CLOSED"}
    assert closed == {d.isoformat() for d in session_for("STOCK:US:AAPL").holidays
                      if dt.date(1999, 1, 1) <= d <= dt.date(2018, 12, 31)}


def test_calendar_cache_file_gives_the_same_session(tmp_path, monkeypatch) -> None:
    """A session read from the cache file equals one built by exchange_calendars; a broken file is rebuilt."""
    from aitrados.marketdata import calendars
    from aitrados.marketdata.intervals import STOCK_HOURS

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    hours = STOCK_HOURS["US"]
    built = (calendars.closed_days("XNYS", hours), calendars.early_closes("XNYS", hours))
    assert calendars._cached_days("XNYS", hours) == built  # no file yet: built and written
    files = list((tmp_path / "aitrados").glob("calendar-XNYS-*.json"))
    assert len(files) == 1 and dt.date(2018, 12, 25).isoformat() in files[0].read_text()
    assert calendars._cached_days("XNYS", hours) == built  # from the file
    files[0].write_text('{"closed": ["not a date"]')
    assert calendars._cached_days("XNYS", hours) == built  # unreadable: rebuilt
    assert calendars._cached_days("XNYS", hours) == built and not list((tmp_path / "aitrados").glob("*.tmp"))
