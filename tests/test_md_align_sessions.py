"""The aligner on 24/5 FX and 24/7 crypto sessions, weekends and holidays included.

Oracle (the issue's contract): every closed bar of every member appears in exactly one snapshot as
updated (the one at its close), never in a snapshot before its close; nothing is late or partial
when every bar arrives within the lateness. Bars are generated, aggregated by the chart's own
resampler with the same sessions the aligner is given, and delivered in arrival order.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from functools import lru_cache

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aitrados.marketdata.align import Aligner
from aitrados.marketdata.chart import resample_bars
from aitrados.marketdata.generator import generate_bars
from aitrados.marketdata.intervals import CRYPTO_GLOBAL, FOREX_GLOBAL, Session, session_for
from aitrados.marketdata.models import Bar

UTC = dt.timezone.utc
EUR, JPY, BTC = "FOREX:GLOBAL:EURUSD", "FOREX:GLOBAL:USDJPY", "CRYPTO:GLOBAL:BTCUSD"
#: two periods: the US DST change (FX rolls at 21:00 UTC, then 22:00) and Christmas / New Year
PERIODS = {"dst": (dt.date(2018, 10, 29), dt.date(2018, 11, 12)), "xmas": (dt.date(2018, 12, 17), dt.date(2019, 1, 7))}
MEMBERS = [(EUR, "60M"), (EUR, "240M"), (EUR, "DAY"), (EUR, "WEEK"), (JPY, "60M"), (JPY, "DAY"),
           (BTC, "60M"), (BTC, "240M"), (BTC, "DAY"), (BTC, "WEEK")]


@lru_cache(maxsize=None)
def hourly(fs: str, period: str) -> tuple[Bar, ...]:
    """60M bars of a symbol over a period (its default session, no holidays)."""
    a, b = PERIODS[period]
    return tuple(resample_bars(generate_bars(fs, a.isoformat(), b.isoformat(), seed=5), "60M", session_for(fs)))


def market_hours(fs: str, t0: dt.datetime, t1: dt.datetime, holidays: frozenset[dt.date]) -> set[dt.datetime]:
    """Independent oracle of the hourly bars' open times in ``[t0, t1)``: crypto every hour; FX every
    hour of the week from Sunday 17:00 to Friday 17:00 New York, a day rolling at 17:00 (so its date
    is that of New York time + 7 hours), minus holidays."""
    ny = FOREX_GLOBAL.zone
    out, t = set(), t0.replace(minute=0, second=0, microsecond=0)
    while t + dt.timedelta(hours=1) <= t1:
        day = (t.astimezone(ny) + dt.timedelta(hours=7)).date()
        if t >= t0 and (fs == BTC or (day.weekday() < 5 and day not in holidays)):
            out.add(t)
        t += dt.timedelta(hours=1)
    return out


def feed_all(al: Aligner, bars: list[Bar], delays: list[float]) -> list:
    """Deliver each bar ``delay`` seconds after its close, in arrival order; ``now`` = its arrival."""
    arrivals = sorted(((b.close_datetime + dt.timedelta(seconds=d), i, b) for i, (b, d) in enumerate(zip(bars, delays))),
                      key=lambda x: (x[0], x[1]))
    return [s for t, _, b in arrivals for s in al.feed(b, now=t)]


def check_exactly_once(snaps: list, bars: list[Bar], al: Aligner, group: str) -> None:
    frontiers = [s.frontier for s in snaps]
    assert frontiers == sorted(set(frontiers)), "frontiers strictly increasing, each once"
    seen = Counter()
    for s in snaps:
        assert not s.partial and s.missing == ()
        for m in s.updated:
            assert s.bars[m].close_datetime == s.frontier
            seen[(m, s.frontier)] += 1
        for m, b in s.bars.items():
            assert b.close_datetime <= s.frontier, "never before its close"
    want = Counter(((b.full_symbol, b.interval), b.close_datetime) for b in bars)
    assert seen == want, "every closed bar updated in exactly one snapshot"
    st_ = al.stats(group)
    assert st_["late"] == 0 and st_["partials"] == 0


@st.composite
def scenario(draw: st.DrawFn) -> tuple:
    period = draw(st.sampled_from(sorted(PERIODS)))
    a, b = PERIODS[period]
    weekdays = [a + dt.timedelta(days=k) for k in range((b - a).days) if (a + dt.timedelta(days=k)).weekday() < 5]
    hol = {fs: frozenset(draw(st.lists(st.sampled_from(weekdays), max_size=3))) for fs in (EUR, JPY)}
    members = draw(st.lists(st.sampled_from(MEMBERS), min_size=1, max_size=6, unique=True))
    first = draw(st.integers(0, (b - a).days - 3))
    length = draw(st.integers(1, 9))
    t0 = dt.datetime.combine(a + dt.timedelta(days=first), dt.time(draw(st.integers(0, 23))), UTC)
    t1 = min(t0 + dt.timedelta(days=length, hours=draw(st.integers(0, 23))), dt.datetime.combine(b, dt.time(0), UTC))
    lateness = draw(st.sampled_from([30.0, 600.0, 3600.0]))
    return period, hol, members, t0, t1, lateness, draw(st.randoms(use_true_random=False))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scenario())
def test_fx_and_crypto_align_exactly_once_with_weekends_and_holidays(sc: tuple) -> None:
    period, hol, members, t0, t1, lateness, rnd = sc
    sessions: dict[str, Session] = {EUR: FOREX_GLOBAL.with_holidays(hol[EUR]), JPY: FOREX_GLOBAL.with_holidays(hol[JPY]),
                                    BTC: CRYPTO_GLOBAL}
    bars: list[Bar] = []
    for fs in {m[0] for m in members}:
        s = sessions[fs]
        h = [b for b in hourly(fs, period) if t0 <= b.datetime and b.close_datetime <= t1 and s.is_trading_day(s.day_of(b.datetime))]
        for iv in {m[1] for m in members if m[0] == fs}:
            bars += h if iv == "60M" else resample_bars(h, iv, s, include_partial=False)
    bars = [b for b in bars if b.close_datetime > t0]
    for fs in {m[0] for m in members if m[1] == "60M"}:  # the hours against the market's own rule
        assert {b.datetime for b in bars if b.full_symbol == fs and b.interval == "60M"} == market_hours(fs, t0, t1, hol.get(fs, frozenset()))
    for fs, days in hol.items():  # the generated data really is closed on the holidays
        assert not any(b.full_symbol == fs and sessions[fs].day_of(b.close_datetime - dt.timedelta(seconds=1)) in days
                       for b in bars)
    delays = [rnd.uniform(0.0, lateness * 0.99) for _ in bars]
    al = Aligner(lateness=dt.timedelta(seconds=lateness), sessions=sessions)
    members_map: dict[str, list[str]] = {}
    for fs, iv in members:
        members_map.setdefault(fs, []).append(iv)
    al.add_group("g", members_map, start=t0)
    snaps = feed_all(al, bars, delays)
    check_exactly_once(snaps, bars, al, "g")


def test_a_year_of_eurusd_hourly_aligns_every_bar_including_fridays_and_sundays() -> None:
    """The issue's case: a year of EURUSD 60M with its 240M and DAY bars. Before, 84 Friday-close
    240M/DAY bars were dropped as late and no Sunday bar was ever listed as updated."""
    s = session_for(EUR)
    h = resample_bars(generate_bars(EUR, "2018-01-01", "2019-01-01", seed=7), "60M", s)
    bars = h + resample_bars(h, "240M", s, include_partial=False) + resample_bars(h, "DAY", s, include_partial=False)
    al = Aligner(lateness=dt.timedelta(minutes=5))
    al.add_group("fx", {EUR: ["60M", "240M", "DAY"]}, start=dt.datetime(2018, 1, 1, tzinfo=UTC))
    snaps = feed_all(al, bars, [0.0] * len(bars))
    check_exactly_once(snaps, bars, al, "fx")
    assert Counter(b.interval for b in bars) == {"60M": 261 * 24, "240M": 261 * 6, "DAY": 261}
    ny = s.zone
    fridays = [x for x in snaps if x.frontier.astimezone(ny).weekday() == 4 and x.frontier.astimezone(ny).hour == 17]
    assert len(fridays) == 52 and all(len(x.updated) == 3 for x in fridays)  # 60M, 240M and DAY close together
    sundays = [x for x in snaps if x.frontier.astimezone(ny).weekday() == 6]
    assert len(sundays) >= 52 * 6 and all((EUR, "60M") in x.updated and (EUR, "DAY") not in x.updated for x in sundays)
    assert sum((EUR, "240M") in x.updated for x in sundays) >= 52  # the 17:00-21:00 New York bar
