"""Aligner: property-based checks (random arrival orders, delays and drops) of no look-ahead,
exactly-once per frontier and completeness, plus the documented partial/holiday/late behaviour."""

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aitrados.marketdata.align import Aligner, Snapshot, expected_schedule
from aitrados.marketdata.chart import resample_bars
from aitrados.marketdata.generator import generate_bars
from aitrados.marketdata.intervals import CRYPTO_GLOBAL, US_STOCK_RTH, Session, bar_open, session_for
from aitrados.marketdata.models import Bar

UTC = dt.timezone.utc
EPS = dt.timedelta(microseconds=1)
START = dt.datetime(2018, 6, 4, 19, 20, tzinfo=UTC)  # US close is 20:00 UTC that day
END = dt.datetime(2018, 6, 4, 20, 40, tzinfo=UTC)
HOLIDAY = US_STOCK_RTH.with_holidays({dt.date(2018, 6, 4)})
SESSIONS = {"STOCK:US:SPX": US_STOCK_RTH, "CRYPTO:GLOBAL:BTCUSD": CRYPTO_GLOBAL, "STOCK:US:IXIC": HOLIDAY}


def schedule_bars(fs: str, iv: str) -> list[Bar]:
    s = SESSIONS[fs]
    return [Bar(fs, iv, bar_open(c - EPS, iv, s), c, 1.0, 2.0, 0.5, 1.5, float(k))
            for k, c in enumerate(expected_schedule(iv, s, START, END))]


members_st = st.dictionaries(
    st.sampled_from(sorted(SESSIONS)),
    st.lists(st.sampled_from(["1M", "5M", "15M", "60M"]), min_size=1, max_size=3, unique=True),
    min_size=1, max_size=3,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(members=members_st, data=st.data())
def test_properties_random_arrival(members: dict[str, list[str]], data: st.DataObject) -> None:
    lateness = dt.timedelta(seconds=data.draw(st.sampled_from([0, 60, 180, 10**7]), label="lateness"))
    bars = [b for fs, ivs in members.items() for iv in ivs for b in schedule_bars(fs, iv)]
    n = len(bars)
    dropped = data.draw(st.lists(st.integers(0, 9), min_size=n, max_size=n), label="drop") if n else []
    delays = data.draw(st.lists(st.integers(0, 300), min_size=n, max_size=n), label="delay") if n else []
    ties = data.draw(st.permutations(range(n)), label="ties") if n else []
    arrivals = sorted(
        ((b.close_datetime + dt.timedelta(seconds=d), t, b) for b, d, t, x in zip(bars, delays, ties, dropped) if x != 0),
        key=lambda a: (a[0], a[1]))
    arrived_at = {(b.full_symbol, b.interval, b.close_datetime): at for at, _, b in arrivals}

    al = Aligner(lateness=lateness, sessions=SESSIONS)
    al.add_group("g", members, start=START)
    fed: list[Bar] = []
    emitted = []  # (snapshot, number of bars fed when it was emitted)
    for at, _, b in arrivals:
        fed.append(b)
        emitted += [(s, len(fed)) for s in al.feed(b, now=at)]
    emitted += [(s, len(fed)) for s in al.tick(END + lateness + dt.timedelta(days=1))]

    # schedules, independent of the aligner: which members are due at each frontier
    due: dict[dt.datetime, set[tuple[str, str]]] = {}
    for fs, ivs in members.items():
        for iv in ivs:
            for c in expected_schedule(iv, SESSIONS[fs], START, END):
                due.setdefault(c, set()).add((fs, iv))

    frontiers = [s.frontier for s, _ in emitted]
    assert frontiers == sorted(set(frontiers)), "frontiers must be strictly increasing, each once"
    assert set(frontiers) <= set(due)
    for snap, k in emitted:
        f = snap.frontier
        known = fed[:k]
        for m, bar in snap.bars.items():
            assert bar.close_datetime <= f, "look-ahead: a bar that closes after the frontier"
            assert bar in known, "a bar that had not arrived yet"
            latest = max((b for b in known if (b.full_symbol, b.interval) == m and b.close_datetime <= f),
                         key=lambda b: b.close_datetime)
            assert bar is latest, "each member shows its latest closed bar as of the frontier"
        arrived = {m for m in due[f] if any(b.close_datetime == f and (b.full_symbol, b.interval) == m for b in known)}
        assert set(snap.updated) == arrived
        assert set(snap.missing) == due[f] - arrived
        assert snap.partial == bool(snap.missing)
        assert arrived, "a frontier where nothing arrived is skipped, not emitted"
    # completeness: a frontier whose due bars all arrived before the deadline is emitted complete;
    # one where any due bar arrived before the deadline is emitted
    by_f = {s.frontier: s for s, _ in emitted}
    for f, ms in due.items():
        times = [arrived_at.get((fs, iv, f)) for fs, iv in ms]
        on_time = [t is not None and t < f + lateness for t in times]
        if all(on_time):
            assert f in by_f and not by_f[f].partial, f"complete frontier {f} not emitted complete"
        if any(on_time):
            assert f in by_f, f"frontier {f} with an on-time bar not emitted"
        if not any(t is not None for t in times):
            assert f not in by_f


def test_multi_timeframe_in_order_no_waiting() -> None:
    spx = generate_bars("STOCK:US:SPX", "2018-06-04T19:00", "2018-06-05T14:00", seed=1)
    btc = generate_bars("CRYPTO:GLOBAL:BTCUSD", "2018-06-04T19:00", "2018-06-05T14:00", seed=1)
    stream = spx + resample_bars(spx, "15M", include_partial=False) + resample_bars(spx, "DAY", include_partial=False) + btc
    stream.sort(key=lambda b: (b.close_datetime, b.interval == "1M"))  # higher intervals first at a tie
    al = Aligner(lateness=dt.timedelta(0))
    al.add_group("g", {"STOCK:US:SPX": ["1M", "15M", "DAY"], "CRYPTO:GLOBAL:BTCUSD": "1M"}, start=spx[0].datetime)
    snaps = [s for b in stream for s in al.feed(b)]
    assert len(snaps) == len({b.close_datetime for b in stream}) and not any(s.partial for s in snaps)
    close = dt.datetime(2018, 6, 4, 20, 0, tzinfo=UTC)
    at_close = next(s for s in snaps if s.frontier == close)
    assert set(at_close.updated) == {("STOCK:US:SPX", "1M"), ("STOCK:US:SPX", "15M"), ("STOCK:US:SPX", "DAY"),
                                     ("CRYPTO:GLOBAL:BTCUSD", "1M")}
    overnight = next(s for s in snaps if s.frontier == close + dt.timedelta(hours=3))
    assert overnight.updated == (("CRYPTO:GLOBAL:BTCUSD", "1M"),)  # the stock market is closed: not waited for
    assert overnight.get("STOCK:US:SPX", "DAY").close_datetime == close  # type: ignore[union-attr]
    mid = next(s for s in snaps if s.frontier == dt.datetime(2018, 6, 5, 13, 52, tzinfo=UTC))
    assert mid.get("STOCK:US:SPX", "15M").close_datetime == dt.datetime(2018, 6, 5, 13, 45, tzinfo=UTC)  # type: ignore[union-attr]
    rec = mid.to_record()
    assert rec["frontier"] == "2018-06-05T13:52:00+00:00" and rec["bars"]["STOCK:US:SPX"]["15M"]["interval"] == "15M"


def test_partial_after_lateness_names_missing_and_late_bar_is_counted() -> None:
    f1 = dt.datetime(2018, 6, 5, 14, 0, tzinfo=UTC)
    a = Bar("STOCK:US:SPX", "1M", f1 - dt.timedelta(minutes=1), f1, 1.0, 1.0, 1.0, 1.0, 1.0)
    b = Bar("STOCK:US:IXIC", "1M", f1 - dt.timedelta(minutes=1), f1, 2.0, 2.0, 2.0, 2.0, 2.0)
    al = Aligner(lateness=dt.timedelta(seconds=30))
    al.add_group("pair", {"STOCK:US:SPX": ["1M"], "STOCK:US:IXIC": ["1M"]}, start=f1 - dt.timedelta(minutes=1))
    assert al.feed(a, now=f1) == []
    assert al.tick(f1 + dt.timedelta(seconds=29)) == []
    (snap,) = al.tick(f1 + dt.timedelta(seconds=30))
    assert snap.partial and snap.missing == (("STOCK:US:IXIC", "1M"),) and snap.updated == (("STOCK:US:SPX", "1M"),)
    assert al.tick(f1 + dt.timedelta(seconds=31)) == []  # never twice
    assert al.feed(b, now=f1 + dt.timedelta(seconds=40)) == [] and al.stats("pair")["late"] == 1


def test_unknown_holiday_skips_empty_frontiers_and_known_holiday_is_not_waited_for() -> None:
    day = dt.datetime(2018, 7, 4, 13, 30, tzinfo=UTC)
    btc = generate_bars("CRYPTO:GLOBAL:BTCUSD", day, day + dt.timedelta(minutes=10))
    # a session without calendar does not know July 4th: the stock member is due, never comes: partial
    bare = {"STOCK:US:SPX": US_STOCK_RTH}
    al = Aligner(lateness=dt.timedelta(seconds=5), sessions=bare)
    al.add_group("g", {"STOCK:US:SPX": ["1M"], "CRYPTO:GLOBAL:BTCUSD": ["1M"]}, start=day)
    snaps = [s for b in btc for s in al.feed(b, now=b.close_datetime + dt.timedelta(seconds=10))]
    assert len(snaps) == 10 and all(s.partial and s.missing == (("STOCK:US:SPX", "1M"),) for s in snaps)
    # calendar knows it (given, or the default NYSE calendar): complete, the stock member is not due
    for sessions in ({"STOCK:US:SPX": US_STOCK_RTH.with_holidays({dt.date(2018, 7, 4)})}, None):
        al2 = Aligner(lateness=dt.timedelta(seconds=5), sessions=sessions)
        al2.add_group("g", {"STOCK:US:SPX": ["1M"], "CRYPTO:GLOBAL:BTCUSD": ["1M"]}, start=day)
        snaps = [s for b in btc for s in al2.feed(b)]
        assert len(snaps) == 10 and not any(s.partial for s in snaps)
    # stock-only group on the unknown holiday: nothing arrives, frontiers are skipped, none emitted
    al3 = Aligner(lateness=dt.timedelta(seconds=5), sessions=bare)
    al3.add_group("s", {"STOCK:US:SPX": ["1M", "5M"]}, start=day)
    assert al3.tick(day + dt.timedelta(days=1)) == [] and al3.stats("s")["skipped"] >= 1
    nxt = generate_bars("STOCK:US:SPX", "2018-07-05T13:30", "2018-07-05T13:32")
    assert [s.frontier for b in nxt for s in al3.feed(b)] == [b.close_datetime for b in nxt]


def test_start_inferred_and_group_management() -> None:
    bars = generate_bars("CRYPTO:GLOBAL:BTCUSD", "2018-01-01T00:00", "2018-01-01T00:05")
    al = Aligner()
    al.add_group("x", {"crypto:global:btcusd": ["1m"]})
    assert [s.frontier for b in bars for s in al.feed(b)] == [b.close_datetime for b in bars]
    assert al.groups() == {"x": {"CRYPTO:GLOBAL:BTCUSD": ["1M"]}}
    with pytest.raises(ValueError, match="already exists"):
        al.add_group("x", {"STOCK:US:SPX": ["DAY"]})
    al.add_group("x", {"STOCK:US:SPX": ["DAY"]}, replace=True)
    assert al.groups() == {"x": {"STOCK:US:SPX": ["DAY"]}}
    assert al.feed(bars[0]) == []  # no group wants it any more
    with pytest.raises(ValueError, match="no members"):
        al.add_group("y", {})
    with pytest.raises(ValueError, match="unknown interval"):
        al.add_group("y", {"STOCK:US:SPX": ["2H"]})
    assert al.remove_group("x") and not al.remove_group("x") and al.groups() == {}


def test_bundled_daily_data_two_symbols_day_week_month() -> None:
    """The real multi-symbol case: S&P 500 and NASDAQ 2018, DAY + WEEK + MON, replayed in close order
    on a simulated clock. Without a holiday calendar Good Friday (a Friday that closes the week and
    the month) comes out partial, naming the DAY members, and the other holidays are skipped; with
    the holidays (shared by the resampling and the aligner) every snapshot is complete."""
    from aitrados.marketdata.loader import bundled_bar_files, load_bars

    t0, t1 = dt.datetime(2018, 1, 1, tzinfo=UTC), dt.datetime(2019, 1, 1, tzinfo=UTC)
    files = bundled_bar_files()
    days = {fs: [b for b in load_bars(p, session=US_STOCK_RTH).bars if t0 <= b.datetime < t1] for (fs, _), p in files.items()}
    trading = {b.datetime.astimezone(US_STOCK_RTH.zone).date() for b in days["STOCK:US:SPX"]}
    weekdays = {t0.date() + dt.timedelta(days=k) for k in range(365)}
    holidays = {d for d in weekdays if d.weekday() < 5 and d not in trading}
    assert dt.date(2018, 3, 30) in holidays and dt.date(2018, 7, 4) in holidays and len(holidays) == 10
    members = {fs: ["DAY", "WEEK", "MON"] for fs in days}
    good_friday = dt.datetime(2018, 3, 30, 20, 0, tzinfo=UTC)

    def run(session: Session) -> tuple[list[Bar], list[Snapshot], Aligner]:
        stream = [b for d in days.values() for b in d + resample_bars(d, "WEEK", session, include_partial=False)
                  + resample_bars(d, "MON", session, include_partial=False)]
        stream.sort(key=lambda b: (b.close_datetime, b.full_symbol, b.interval))
        al = Aligner(lateness=dt.timedelta(hours=1), sessions={fs: session for fs in days})
        al.add_group("idx", members, start=t0)
        snaps = [s for b in stream for s in al.feed(b, now=b.close_datetime)]
        return stream, snaps + al.tick(t1), al

    stream, snaps, al = run(US_STOCK_RTH)
    assert [s.frontier for s in snaps] == sorted({b.close_datetime for b in stream})
    assert [s.frontier for s in snaps if s.partial] == [good_friday]
    gf = next(s for s in snaps if s.frontier == good_friday)
    assert set(gf.missing) == {(fs, "DAY") for fs in days}
    assert set(gf.updated) == {(fs, iv) for fs in days for iv in ("WEEK", "MON")}
    assert al.stats("idx")["skipped"] == len(holidays) - 1  # the other holidays: nothing arrived
    for s in snaps:  # both symbols move together: same calendar
        assert {iv for fs, iv in s.updated if fs == "STOCK:US:IXIC"} == {iv for fs, iv in s.updated if fs == "STOCK:US:SPX"}

    stream, snaps, al = run(US_STOCK_RTH.with_holidays(holidays))
    assert [s.frontier for s in snaps] == sorted({b.close_datetime for b in stream})
    assert len(snaps) == len(trading) and not any(s.partial for s in snaps) and al.stats("idx")["skipped"] == 0
    thursday = next(s for s in snaps if s.frontier == good_friday - dt.timedelta(days=1))
    assert len(thursday.updated) == 6  # DAY, WEEK and MON of both close on the Thursday

    # the default session (the NYSE calendar, with its 13:00 early closes) everywhere: all complete
    days = {fs: [b for b in load_bars(p).bars if t0 <= b.datetime < t1] for (fs, _), p in files.items()}
    nyse = session_for("STOCK:US:SPX")
    stream = [b for d in days.values() for b in d + resample_bars(d, "WEEK", nyse, include_partial=False)
              + resample_bars(d, "MON", nyse, include_partial=False)]
    stream.sort(key=lambda b: (b.close_datetime, b.full_symbol, b.interval))
    al = Aligner(lateness=dt.timedelta(hours=1))
    al.add_group("idx", members, start=t0)
    snaps = [s for b in stream for s in al.feed(b, now=b.close_datetime)] + al.tick(t1)
    assert len(snaps) == len(trading) and not any(s.partial for s in snaps) and al.stats("idx")["skipped"] == 0
    assert {s.frontier for s in snaps} == {b.close_datetime for b in stream}
    assert dt.datetime(2018, 12, 24, 18, 0, tzinfo=UTC) in {s.frontier for s in snaps}  # 13:00 New York
