"""Loader: bundled data, column mappings, bad rows reported with file and line, news/calendar; the
bundled daily data aggregated to WEEK and MON equals pandas resampling."""

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aitrados.marketdata.chart import resample_bars
from aitrados.marketdata.intervals import US_STOCK_RTH
from aitrados.marketdata.loader import (
    bar_filename,
    bundled_bar_files,
    bundled_data_dir,
    load_bars,
    load_calendar,
    load_news,
    symbol_from_filename,
)

UTC = dt.timezone.utc


def test_bundled_files_load_clean_on_the_nyse_calendar() -> None:
    """The real closures (2001-09-11..14, 2007-01-02, 2012-10-29/30, every holiday) are no gaps."""
    files = bundled_bar_files()
    assert set(files) == {("STOCK:US:SPX", "DAY"), ("STOCK:US:IXIC", "DAY")}
    for key in files:
        assert load_bars(files[key]).issues == []
    res = load_bars(files[("STOCK:US:SPX", "DAY")])
    assert len(res.bars) == 5031
    days = {b.datetime.date() for b in res.bars}
    for closed in ("2001-09-11", "2001-09-14", "2007-01-02", "2012-10-29", "2012-10-30", "2018-12-25"):
        assert dt.date.fromisoformat(closed) not in days
    xmas_eve = next(b for b in res.bars if b.datetime.date() == dt.date(2018, 12, 24))
    assert xmas_eve.close_datetime == dt.datetime(2018, 12, 24, 18, 0, tzinfo=UTC)  # 13:00 New York early close
    first = res.bars[0]
    assert (first.datetime, first.close_datetime) == (dt.datetime(1999, 1, 4, 14, 30, tzinfo=UTC),
                                                      dt.datetime(1999, 1, 4, 21, 0, tzinfo=UTC))
    assert (first.open, first.close, first.volume) == (1229.22998, 1228.099976, 877000000.0)


def test_a_missing_trading_day_is_still_a_gap(tmp_path: Path) -> None:
    src = bundled_bar_files()[("STOCK:US:SPX", "DAY")].read_text().splitlines()
    # drop 2001-09-17 (the reopening after 9/11) and 2018-12-26 (after Christmas): both real trading days
    kept = [ln for ln in src if not ln.startswith(("9/17/2001", "2001-09-17", "12/26/2018", "2018-12-26"))]
    assert len(kept) == len(src) - 2
    path = tmp_path / "STOCK_US_SPX_DAY.csv"
    path.write_text("\n".join(kept) + "\n")
    res = load_bars(path)
    assert [i.kind for i in res.issues] == ["gap", "gap"]
    assert "2001-09-17" in res.issues[0].message and "2018-12-26" in res.issues[1].message


@pytest.mark.parametrize("interval,rule", [("WEEK", "W-MON"), ("MON", "MS")])
@pytest.mark.parametrize("key", [("STOCK:US:SPX", "DAY"), ("STOCK:US:IXIC", "DAY")])
def test_daily_to_week_and_month_equals_pandas(interval: str, rule: str, key: tuple[str, str]) -> None:
    path = bundled_bar_files()[key]
    got = resample_bars(load_bars(path).bars, interval, US_STOCK_RTH)
    # oracle: pandas straight from the raw CSV, independent of our loader
    raw = pd.read_csv(path, parse_dates=["Date"], date_format="%m/%d/%Y").set_index("Date")
    want = raw.resample(rule, label="left", closed="left").agg(
        {"Open": "first", "High": "max", "Low": "min", "Close": "last", "Volume": "sum"}).dropna()
    assert [b.datetime.astimezone(US_STOCK_RTH.zone).date() for b in got] == [d.date() for d in want.index]
    ours = np.array([[b.open, b.high, b.low, b.close, b.volume] for b in got])
    np.testing.assert_array_equal(ours, want.to_numpy(dtype=float))
    assert len(got) > (1000 if interval == "WEEK" else 230)
    assert all(b.closed for b in got[:-1])
    # the data ends on Monday 2018-12-31: the month is complete, that week is still forming
    assert got[-1].closed is (interval == "MON")


def test_filename_convention() -> None:
    assert symbol_from_filename("x/STOCK_US_SPX_DAY.csv") == ("STOCK:US:SPX", "DAY")
    assert symbol_from_filename("CRYPTO_GLOBAL_BTC_USD_1M.parquet") == ("CRYPTO:GLOBAL:BTC_USD", "1M")
    assert symbol_from_filename("prices.csv") is None
    assert bar_filename("stock:us:spx", "day") == "STOCK_US_SPX_DAY.csv"


BAD_YAHOO = """Date,Open,High,Low,Close,Adj Close,Volume
1/2/2018,10,11,9,10.5,10.5,100
1/3/2018,10.5,11.5,10,11,11,120
1/3/2018,10.5,11.5,10,11,11,120
1/4/2018,11,10,12,11,11,90
1/5/2018,abc,12,10,11,11,90
13/45/2018,11,12,10,11,11,90
1/8/2018,11,12,10,11.5,11.5,80
1/5/2018,11,12,10,11,11,90
1/12/2018,11.5,12,11,11.8,11.8,70
"""


def test_bad_rows_reported_with_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "STOCK_US_TEST_DAY.csv"
    p.write_text(BAD_YAHOO)
    res = load_bars(p)
    got = [(i.line, i.kind) for i in res.issues]
    # line 8 follows rejected rows, so Jan 4-5 are missing: a gap (reported, row served)
    assert got == [(4, "duplicate"), (5, "inconsistent"), (6, "malformed"), (7, "malformed"),
                   (8, "gap"), (9, "out_of_order"), (10, "gap")]
    assert all(i.file == str(p) for i in res.issues)
    assert "high 10.0 < low 12.0" in res.issues[1].message
    assert "open is not a number: 'abc'" in res.issues[2].message
    assert str(res.issues[0]).startswith(f"{p}:4: duplicate:")
    # the good rows are served, in order, unchanged
    assert [b.datetime.astimezone(US_STOCK_RTH.zone).day for b in res.bars] == [2, 3, 8, 12]
    assert [b.close for b in res.bars] == [10.5, 11, 11.5, 11.8]


def test_aitrados_columns_and_intraday_gap(tmp_path: Path) -> None:
    p = tmp_path / "bars.csv"
    p.write_text(
        "asset_schema,interval,country_iso_code,exchange,symbol,datetime,close_datetime,open,high,low,close,volume,vwap\n"
        "CRYPTO,1M,GLOBAL,GLOBAL,BTCUSD,2025-07-18T00:30:00+00:00,2025-07-18T00:31:00+00:00,1,2,0.5,1.5,3,1.2\n"
        "CRYPTO,1M,GLOBAL,GLOBAL,BTCUSD,2025-07-18T00:31:00+00:00,2025-07-18T00:32:00+00:00,1.5,2,1,1.7,3,\n"
        "CRYPTO,1M,GLOBAL,GLOBAL,BTCUSD,2025-07-18T00:35:00+00:00,2025-07-18T00:36:00+00:00,1.7,2,1,1.8,3,1.5\n"
    )
    res = load_bars(p)
    assert [b.full_symbol for b in res.bars] == ["CRYPTO:GLOBAL:BTCUSD"] * 3
    assert res.bars[1].vwap is None and res.bars[2].vwap == 1.5
    assert [(i.line, i.kind) for i in res.issues] == [(4, "gap")]
    assert "expected 2025-07-18T00:32:00+00:00" in res.issues[0].message


def test_missing_columns_and_custom_mapping(tmp_path: Path) -> None:
    p = tmp_path / "STOCK_US_X_DAY.csv"
    p.write_text("when,o,h,l,c\n2018-01-02,1,2,0.5,1.5\n")
    res = load_bars(p)
    assert res.bars == [] and res.issues[0].kind == "missing_column" and "Pass a column mapping" in res.issues[0].message
    res = load_bars(p, mapping={"datetime": "when", "open": "o", "high": "h", "low": "l", "close": "c"})
    assert len(res.bars) == 1 and res.bars[0].volume == 0.0 and res.issues == []
    with pytest.raises(FileNotFoundError, match="bar file not found"):
        load_bars(tmp_path / "nope.csv")


def test_parquet_needs_pyarrow_or_loads(tmp_path: Path) -> None:
    p = tmp_path / "STOCK_US_X_DAY.parquet"
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        p.write_bytes(b"PAR1")
        with pytest.raises(RuntimeError, match="pip install pyarrow"):
            load_bars(p)
        return
    pd.DataFrame({"Date": ["1/2/2018"], "Open": [1.0], "High": [2.0], "Low": [0.5], "Close": [1.5], "Volume": [9]}).to_parquet(p)
    assert len(load_bars(p).bars) == 1


def test_bundled_news_and_calendar() -> None:
    d = bundled_data_dir()
    news = load_news(d / "news" / "US_2018_sample.json")
    cal = load_calendar(d / "calendar" / "US_2018_sample.json")
    assert news.issues == [] and cal.issues == []
    assert len(news.records) >= 5 and all(n.title.startswith("[SAMPLE]") for n in news.records)
    assert {n.full_symbol for n in news.records} == {"STOCK:US:SPX", "STOCK:US:IXIC"}
    assert {e.event_code for e in cal.records} >= {"FED_INTEREST_RATE_DECISION", "NONFARM_PAYROLLS"}
    times = [e.event_timestamp for e in cal.records]
    assert times == sorted(times) and all(t.year == 2018 for t in times)


def test_news_file_problems_reported_with_lines(tmp_path: Path) -> None:
    p = tmp_path / "news.json"
    p.write_text('[\n  {"published_date": "2018-01-03T10:00:00Z", "title": "b"},\n'
                 '  {"published_date": "2018-01-02T10:00:00Z", "title": "a"},\n'
                 '  {"title": "no date"},\n'
                 '  {"published_date": "2018-01-03T10:00:00Z", "title": "b"},\n'
                 '  {"published_date": "2018-01-04T10:00:00Z", "title": "c", "sentiment_score": "high"}\n]\n')
    res = load_news(p)
    assert [n.title for n in res.records] == ["a", "b"]  # sorted by time
    assert [(i.line, i.kind) for i in res.issues] == [(4, "malformed"), (5, "duplicate"), (6, "malformed")]
    q = tmp_path / "cal.csv"
    q.write_text("country_iso_code,event_code,event_timestamp,impact\nUS,CPI,2018-01-02T13:30:00Z,high\nUS,CPI,bad,high\n")
    res = load_calendar(q)
    assert len(res.records) == 1 and [(i.line, i.kind) for i in res.issues] == [(3, "malformed")]
    j = tmp_path / "events.jsonl"
    j.write_text('{"country_iso_code": "US", "event_code": "A", "event_timestamp": "2018-01-02T13:30:00Z"}\n{oops\n')
    res = load_calendar(j)
    assert len(res.records) == 1 and [(i.line, i.kind) for i in res.issues] == [(2, "malformed")]
