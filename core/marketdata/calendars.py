"""Exchange calendars: the holidays and early closes of the stock markets, from ``exchange_calendars``.

:func:`stock_session` gives a country's regular hours (:data:`~aitrados.marketdata.intervals.STOCK_HOURS`)
with the closed weekdays and half days of its exchange's calendar (New York: XNYS, so 2018-12-25 is
closed, 2018-12-24 closes at 13:00, and 2001-09-11..14, 2007-01-02 and 2012-10-29/30 are closed).
:func:`~aitrados.marketdata.intervals.session_for` uses it for every ``STOCK:``/``OPTION:`` symbol of
a known country, so the generator, the loader's gap check, the aligner and the replay server's
``/holiday/list`` all follow one calendar. FX (24/5) and crypto (24/7) are plain sessions of
:mod:`aitrados.marketdata.intervals`: ``exchange_calendars`` has no such markets.

Calendars cover :data:`CALENDAR_START` .. :data:`CALENDAR_END` (clipped to what the library knows for
an exchange); outside that range no holiday is known and every weekday trades. Each calendar is built
once per process, on first use (about half a second).
"""

from __future__ import annotations

import datetime as dt
import warnings
from functools import lru_cache
from typing import Any

from aitrados.marketdata.intervals import STOCK_HOURS, Session

__all__ = ["CALENDAR_START", "CALENDAR_END", "EXCHANGES", "exchange_calendar", "stock_session",
           "closed_days", "early_closes"]

#: First and last date the calendars are built for (the generator's data start in 1990).
CALENDAR_START = dt.date(1990, 1, 1)
CALENDAR_END = dt.date(2035, 12, 31)

#: The ``exchange_calendars`` code of each country's main stock exchange.
EXCHANGES: dict[str, str] = {
    "US": "XNYS", "UK": "XLON", "DE": "XETR", "FR": "XPAR", "JP": "XTKS", "HK": "XHKG",
    "CN": "XSHG", "AU": "XASX", "CA": "XTSE", "CH": "XSWX",
}


@lru_cache(maxsize=None)
def exchange_calendar(code: str) -> Any:
    """The ``exchange_calendars`` calendar ``code`` (e.g. ``"XNYS"``) over the supported range.

    :raises ValueError: for a code the library does not know.
    """
    import exchange_calendars as xc

    if code not in xc.get_calendar_names(include_aliases=True):
        raise ValueError(f"unknown exchange calendar {code!r}: use an exchange_calendars code such as 'XNYS'")
    # a few calendars start later (XSHG 1991, XTKS 1997): take the first start the library accepts
    for year in (CALENDAR_START.year, 1991, 1997, 2000, 2005):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the library may warn about dates near its bounds
                return xc.get_calendar(code, start=dt.date(year, 1, 1).isoformat(), end=CALENDAR_END.isoformat())
        except ValueError:
            continue
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return xc.get_calendar(code)


def _weekdays(first: dt.date, last: dt.date, weekdays: frozenset[int]) -> list[dt.date]:
    out, d = [], first
    while d <= last:
        if d.weekday() in weekdays:
            out.append(d)
        d += dt.timedelta(days=1)
    return out


def closed_days(code: str, hours: Session) -> frozenset[dt.date]:
    """The weekdays of ``hours`` on which exchange ``code`` does not trade (holidays, closures)."""
    cal = exchange_calendar(code)
    sessions = {ts.date() for ts in cal.sessions}
    first, last = cal.first_session.date(), cal.last_session.date()
    return frozenset(d for d in _weekdays(first, last, hours.weekdays) if d not in sessions)


def early_closes(code: str, hours: Session) -> frozenset[tuple[dt.date, dt.time]]:
    """``(date, local close time)`` of the half days of exchange ``code`` that close before ``hours.close``."""
    cal = exchange_calendar(code)
    out = set()
    for ts in cal.early_closes:
        close = cal.session_close(ts).tz_convert(hours.tz).time()
        if hours.open < close < hours.close:
            out.add((ts.date(), close))
    return frozenset(out)


def stock_session(country: str) -> Session:
    """The stock session of ``country`` (e.g. ``"US"``, any case): its regular hours with its
    exchange's holidays and early closes; one shared instance per country.

    :raises ValueError: for a country without known stock hours (see ``STOCK_HOURS``).
    """
    return _stock_session(country.strip().upper())


@lru_cache(maxsize=None)
def _stock_session(c: str) -> Session:
    hours = STOCK_HOURS.get(c)
    if hours is None:
        raise ValueError(f"no stock session for country {c!r}: known are {' '.join(sorted(STOCK_HOURS))}")
    code = EXCHANGES[c]
    return Session(hours.name, hours.tz, hours.open, hours.close, hours.weekdays,
                   closed_days(code, hours), early_closes(code, hours))
