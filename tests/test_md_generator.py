"""Generator: deterministic per seed and symbol, range-consistent, OHLC-consistent, session-aware."""

import datetime as dt

import pytest

from aitrados.marketdata.generator import generate_bars, iter_bars
from aitrados.marketdata.intervals import US_STOCK_RTH

UTC = dt.timezone.utc
NY = US_STOCK_RTH.zone


def test_same_seed_same_bars_other_seed_or_symbol_differs() -> None:
    a = generate_bars("STOCK:US:AAPL", "2018-03-08", "2018-03-10", seed=11)
    assert a == generate_bars("stock:us:aapl", "2018-03-08", "2018-03-10", seed=11)
    b = generate_bars("STOCK:US:AAPL", "2018-03-08", "2018-03-10", seed=12)
    c = generate_bars("STOCK:US:MSFT", "2018-03-08", "2018-03-10", seed=11)
    assert [x.datetime for x in a] == [x.datetime for x in b] == [x.datetime for x in c]
    assert [x.close for x in a] != [x.close for x in b] and [x.close for x in a] != [x.close for x in c]


def test_sub_range_equals_slice_of_larger_range() -> None:
    big = generate_bars("CRYPTO:GLOBAL:BTCUSD", "2018-01-01T00:00", "2018-01-03T00:00", seed=4)
    t0, t1 = dt.datetime(2018, 1, 1, 23, 17, tzinfo=UTC), dt.datetime(2018, 1, 2, 1, 3, tzinfo=UTC)
    assert generate_bars("CRYPTO:GLOBAL:BTCUSD", t0, t1, seed=4) == [b for b in big if t0 <= b.datetime < t1]


def test_ohlc_consistent_and_continuous() -> None:
    bars = generate_bars("CRYPTO:GLOBAL:ETHUSD", "2018-05-01", "2018-05-04", seed=9)
    assert len(bars) == 3 * 1440
    for prev, b in zip(bars, bars[1:]):
        assert b.datetime == prev.close_datetime and b.open == prev.close
    for b in bars:
        assert b.low <= min(b.open, b.close) <= max(b.open, b.close) <= b.high
        assert b.volume > 0 and b.low <= b.vwap <= b.high and b.closed and b.interval == "1M"  # type: ignore[operator]


def test_stocks_trade_only_in_session() -> None:
    hol = US_STOCK_RTH.with_holidays({dt.date(2018, 7, 4)})
    bars = generate_bars("STOCK:US:SPY", "2018-07-02", "2018-07-09", session=hol)
    days = sorted({b.datetime.astimezone(NY).date() for b in bars})
    assert days == [dt.date(2018, 7, 2), dt.date(2018, 7, 3), dt.date(2018, 7, 5), dt.date(2018, 7, 6)]
    assert len(bars) == 4 * 390
    local = [b.datetime.astimezone(NY).time() for b in bars]
    assert min(local) == dt.time(9, 30) and max(local) == dt.time(15, 59)


def test_errors() -> None:
    with pytest.raises(ValueError, match="before start"):
        list(iter_bars("STOCK:US:SPY", "2018-07-02", "2018-07-01"))
    with pytest.raises(ValueError, match="expected ASSET:COUNTRY:SYMBOL"):
        generate_bars("SPY", "2018-07-02", "2018-07-03")
