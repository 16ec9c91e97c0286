"""Chart windows: O(1) rolling behaviour, live-bar semantics, and aggregation equal to pandas resample."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from aitrados.marketdata.chart import Change, ChartWindow, can_aggregate, resample_bars
from aitrados.marketdata.generator import generate_bars
from aitrados.marketdata.intervals import CRYPTO_GLOBAL, US_STOCK_RTH, Session, bar_close
from aitrados.marketdata.models import Bar

UTC = dt.timezone.utc


def frame(bars: list[Bar]) -> pd.DataFrame:
    return pd.DataFrame(
        {"open": [b.open for b in bars], "high": [b.high for b in bars], "low": [b.low for b in bars],
         "close": [b.close for b in bars], "volume": [b.volume for b in bars]},
        index=pd.DatetimeIndex([b.datetime for b in bars]),
    )


AGG = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}


def pandas_minutes(bars: list[Bar], minutes: int, session: Session) -> pd.DataFrame:
    """Oracle: pandas resample in the session's wall time, bins anchored at the session open."""
    df = frame(bars)
    df.index = df.index.tz_convert(session.tz).tz_localize(None)
    offset = pd.Timedelta(hours=session.open.hour, minutes=session.open.minute)
    out = df.resample(f"{minutes}min", label="left", closed="left", origin="start_day", offset=offset).agg(AGG)
    out = out.dropna(subset=["open"])
    out.index = out.index.tz_localize(session.tz).tz_convert(UTC)
    return out


def ours(bars: list[Bar], interval: str, session: Session) -> pd.DataFrame:
    return frame(resample_bars(bars, interval, session))


@pytest.mark.parametrize("interval,minutes", [("5M", 5), ("15M", 15), ("60M", 60), ("240M", 240)])
@pytest.mark.parametrize("symbol,session", [("STOCK:US:AAPL", US_STOCK_RTH), ("CRYPTO:GLOBAL:BTCUSD", CRYPTO_GLOBAL)])
def test_resample_equals_pandas(interval: str, minutes: int, symbol: str, session: Session) -> None:
    # spans a DST change (2018-03-11) and a weekend
    bars = generate_bars(symbol, "2018-03-08T00:00", "2018-03-14T00:00", seed=7)
    assert len(bars) > 1000
    got, want = ours(bars, interval, session), pandas_minutes(bars, minutes, session)
    pd.testing.assert_frame_equal(got, want, check_freq=False, check_names=False)


def test_resample_with_gaps_equals_pandas_non_empty_buckets() -> None:
    bars = generate_bars("STOCK:US:MSFT", "2018-06-04", "2018-06-06", seed=3)
    rng = np.random.default_rng(1)
    kept = [b for b in bars if rng.random() > 0.3]  # drop ~30 % of minutes, some whole 5M buckets
    kept = [b for b in kept if not (dt.time(14, 0) <= b.datetime.time() < dt.time(15, 10))]  # a 70-minute hole
    for iv, n in (("5M", 5), ("15M", 15), ("60M", 60)):
        pd.testing.assert_frame_equal(ours(kept, iv, US_STOCK_RTH), pandas_minutes(kept, n, US_STOCK_RTH),
                                      check_freq=False, check_names=False)


def test_day_from_minutes_equals_pandas_groupby_local_date() -> None:
    bars = generate_bars("STOCK:US:AAPL", "2018-03-01", "2018-03-20", seed=1)
    got = resample_bars(bars, "DAY", US_STOCK_RTH)
    df = frame(bars)
    df["day"] = df.index.tz_convert("America/New_York").date
    want = df.groupby("day").agg(AGG)
    assert [b.datetime.astimezone(US_STOCK_RTH.zone).date() for b in got] == list(want.index)
    np.testing.assert_array_equal(frame(got).to_numpy(), want.to_numpy())
    # bar times: session open to session close, local
    for b in got:
        assert b.datetime.astimezone(US_STOCK_RTH.zone).time() == dt.time(9, 30)
        assert b.close_datetime.astimezone(US_STOCK_RTH.zone).time() == dt.time(16, 0)


def test_vwap_is_volume_weighted() -> None:
    bars = generate_bars("CRYPTO:GLOBAL:ETHUSD", "2018-01-01T00:00", "2018-01-01T01:00", seed=2)
    out = resample_bars(bars, "15M", CRYPTO_GLOBAL)
    assert len(out) == 4
    for k, b in enumerate(out):
        part = bars[15 * k: 15 * k + 15]
        want = sum(x.vwap * x.volume for x in part) / sum(x.volume for x in part)  # type: ignore[operator]
        assert b.vwap == pytest.approx(want, rel=1e-12)


def test_window_rolls_and_keeps_last_n() -> None:
    bars = generate_bars("CRYPTO:GLOBAL:BTCUSD", "2018-01-01T00:00", "2018-01-01T02:00", seed=0)
    w = ChartWindow("crypto:global:btcusd", "5m", size=4)
    closes = []
    for b in bars:
        ch = w.update(b)
        if ch is Change.CLOSED:
            closes.extend(w.just_closed)
    # every 5th 1M bar closes a 5M bar exactly at its boundary (no waiting for the next minute)
    assert len(closes) == 24
    assert [c.datetime for c in w.closed_bars()] == [c.datetime for c in closes[-3:]]
    assert len(w) == 3 and w.live_bar() is None
    assert all(c.close_datetime - c.datetime == dt.timedelta(minutes=5) for c in closes)
    df = w.to_frame()
    assert list(df.columns) == ["close_datetime", "open", "high", "low", "close", "volume", "vwap", "closed"]
    assert len(df) == 3 and df.index.tz is not None
    arr = w.arrays()
    np.testing.assert_array_equal(arr["close"], df["close"].to_numpy())


def test_live_updates_do_not_double_count() -> None:
    """A live 1M stream repeats the forming minute; the 5M live bar must count each minute once."""
    t0 = dt.datetime(2018, 1, 1, tzinfo=UTC)
    fs = "CRYPTO:GLOBAL:BTCUSD"

    def m(i: int, o: float, h: float, l: float, c: float, v: float, closed: bool) -> Bar:
        t = t0 + dt.timedelta(minutes=i)
        return Bar(fs, "1M", t, t + dt.timedelta(minutes=1), o, h, l, c, v, None, closed)

    w = ChartWindow(fs, "5M", size=10)
    assert w.update(m(0, 10, 11, 9, 10.5, 1, False)) is Change.OPENED
    assert w.update(m(0, 10, 12, 9, 11.0, 2, False)) is Change.UPDATED
    live = w.live_bar()
    assert live is not None and (live.high, live.close, live.volume, live.closed) == (12, 11.0, 2, False)
    assert w.update(m(0, 10, 12, 8, 11.5, 3, True)) is Change.UPDATED
    assert w.update(m(1, 11.5, 13, 11, 12, 4, False)) is Change.UPDATED
    live = w.live_bar()
    assert live is not None and (live.open, live.high, live.low, live.close, live.volume) == (10, 13, 8, 12, 7)
    # minute 1 never sends its closed update; minute 2 arrives: minute 1 is taken as final
    assert w.update(m(2, 12, 12.5, 11.8, 12.2, 1, True)) is Change.UPDATED
    assert w.update(m(0, 1, 1, 1, 1, 1, True)) is Change.NONE and w.stale == 1  # late duplicate
    for i in (3, 4):
        ch = w.update(m(i, 12.2, 12.4, 12.0, 12.1, 1, True))
    assert ch is Change.CLOSED
    (b,) = w.just_closed
    assert (b.open, b.high, b.low, b.close, b.volume, b.closed) == (10, 13, 8, 12.1, 3 + 4 + 1 + 1 + 1, True)
    assert b.close_datetime == t0 + dt.timedelta(minutes=5)


def test_same_interval_stream_and_hydrate() -> None:
    fs = "STOCK:US:SPX"
    bars = generate_bars(fs, "2018-06-04", "2018-06-05", seed=5)[:30]
    w = ChartWindow(fs, "1M", size=11)
    assert w.hydrate(bars[:20]) == 10
    assert [b.datetime for b in w.closed_bars()] == [b.datetime for b in bars[10:20]]
    seq = w.seq
    nxt = bars[20]
    assert w.update(Bar(**{**_d(nxt), "close": nxt.open, "closed": False})) is Change.OPENED
    assert w.update(nxt) is Change.CLOSED and w.just_closed == (nxt,)
    assert w.seq == seq + 2
    assert w.update(bars[5]) is Change.NONE  # older than the window
    # a live bar superseded by the next bar without a closed update is closed as it stood
    live = Bar(**{**_d(bars[21]), "closed": False})
    w.update(live)
    assert w.update(bars[22]) is Change.CLOSED
    assert [b.datetime for b in w.just_closed] == [bars[21].datetime, bars[22].datetime]
    assert all(b.closed for b in w.just_closed)
    assert len(w.closed_bars()) == 10 and w.closed_bars()[-1] == bars[22]


def test_tick_closes_live_bar_at_end_of_data() -> None:
    bars = generate_bars("STOCK:US:SPX", "2018-06-04", "2018-06-05", seed=5)
    w = ChartWindow("STOCK:US:SPX", "60M", size=10)
    for b in bars[:-3]:
        w.update(b)
    assert w.live_bar() is not None
    assert w.tick(bars[-4].close_datetime) is Change.NONE
    assert w.tick(dt.datetime(2018, 6, 4, 20, 0, tzinfo=UTC)) is Change.CLOSED
    (b,) = w.just_closed
    assert b.close_datetime == dt.datetime(2018, 6, 4, 20, 0, tzinfo=UTC)  # cut at the 16:00 close
    assert b.close == bars[-4].close


def test_errors_are_clear() -> None:
    w = ChartWindow("STOCK:US:SPX", "15M")
    b = generate_bars("STOCK:US:AAPL", "2018-06-04", "2018-06-05")[0]
    with pytest.raises(ValueError, match="bar of STOCK:US:AAPL"):
        w.update(b)
    with pytest.raises(ValueError, match="window size"):
        ChartWindow("STOCK:US:SPX", "15M", size=1)
    with pytest.raises(ValueError, match="unknown interval"):
        ChartWindow("STOCK:US:SPX", "7M")
    assert can_aggregate("1M", "15M") and can_aggregate("DAY", "MON") and not can_aggregate("WEEK", "MON")
    assert not can_aggregate("10M", "15M")
    w3 = ChartWindow("STOCK:US:SPX", "15M")
    with pytest.raises(ValueError, match="cannot build 15M bars from 10M"):
        w3.update(Bar("STOCK:US:SPX", "10M", b.datetime, bar_close(b.datetime, "10M"), 1, 1, 1, 1, 1))


def _d(b: Bar) -> dict:
    import msgspec

    return msgspec.structs.asdict(b)


def test_hydrate_resets_bucket_state() -> None:
    """After hydrating with history, aggregation restarts on the session grid (no stale fast path)."""
    day2 = generate_bars("STOCK:US:SPX", "2018-06-05", "2018-06-06", seed=5)
    day1 = generate_bars("STOCK:US:SPX", "2018-06-04", "2018-06-05", seed=5)
    want = resample_bars(day1, "240M", US_STOCK_RTH)
    w = ChartWindow("STOCK:US:SPX", "240M", size=5)
    for b in day2:
        w.update(b)
    w.hydrate([want[0]])  # 09:30-13:30 of day 1
    rest = [b for b in day1 if b.datetime >= want[0].close_datetime]
    for b in rest:
        w.update(b)
    assert w.closed_bars() == want


_DAY_BARS = generate_bars("STOCK:US:QQQ", "2018-11-01", "2018-11-03", seed=8)  # two sessions, one DST-free span


@pytest.mark.parametrize("interval,minutes", [("5M", 5), ("60M", 60)])
def test_random_gaps_and_live_updates_equal_pandas(interval: str, minutes: int) -> None:
    """Hypothesis: any subset of minutes, each optionally preceded by live (unclosed) versions of
    itself, aggregates to exactly pandas' resampling of the closed minutes."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=40, deadline=None)
    @given(keep=st.lists(st.booleans(), min_size=len(_DAY_BARS), max_size=len(_DAY_BARS)),
           lives=st.lists(st.integers(0, 2), min_size=len(_DAY_BARS), max_size=len(_DAY_BARS)))
    def check(keep: list[bool], lives: list[int]) -> None:
        kept = [b for b, k in zip(_DAY_BARS, keep) if k]
        if not kept:
            return
        feed: list[Bar] = []
        for b, k, n in zip(_DAY_BARS, keep, lives):
            if not k:
                continue
            for j in range(n):  # earlier, partial states of the same minute
                feed.append(Bar(b.full_symbol, b.interval, b.datetime, b.close_datetime, b.open,
                                max(b.open, b.low + (b.high - b.low) * 0.3 * j), b.low, b.low, b.volume / (2 + j), None, False))
            feed.append(b)
        got = frame(resample_bars(feed, interval, US_STOCK_RTH))
        pd.testing.assert_frame_equal(got, pandas_minutes(kept, minutes, US_STOCK_RTH), check_freq=False, check_names=False)

    check()
