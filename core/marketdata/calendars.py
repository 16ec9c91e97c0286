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
once per process, on first use (about half a second, plus importing ``exchange_calendars`` and
pandas); what a session needs from it (its closed weekdays and early closes) is then kept in a
cache file per exchange and library version (:func:`cache_dir`), so later processes read a small
JSON file instead of importing the library. A missing, stale or unreadable cache file is rebuilt.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
import warnings
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from loguru import logger

from .intervals import STOCK_HOURS, Session

__all__ = ["CALENDAR_START", "CALENDAR_END", "EXCHANGES", "exchange_calendar", "stock_session",
           "closed_days", "early_closes", "cache_dir"]

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
    closed, early = _cached_days(code, hours)
    return Session(hours.name, hours.tz, hours.open, hours.close, hours.weekdays, closed, early)


def cache_dir() -> Path:
    """Folder of the calendar cache files: ``$XDG_CACHE_HOME/aitrados`` (default ``~/.cache/aitrados``)."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "aitrados"


def _cache_file(code: str, hours: Session) -> Path:
    try:
        lib = version("exchange_calendars")
    except PackageNotFoundError:  # pragma: no cover - a dependency
        lib = "unknown"
    key = f"{code}-{lib}-{CALENDAR_START}-{CALENDAR_END}-{hours.tz}-{hours.open}-{hours.close}-" \
          f"{''.join(map(str, sorted(hours.weekdays)))}"
    return cache_dir() / ("calendar-" + key.replace(":", "").replace("/", "_") + ".json")


def _cached_days(code: str, hours: Session) -> tuple[frozenset[dt.date], frozenset[tuple[dt.date, dt.time]]]:
    """:func:`closed_days` and :func:`early_closes` of ``code``, from the cache file when it is there."""
    path = _cache_file(code, hours)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return (frozenset(dt.date.fromisoformat(d) for d in doc["closed"]),
                frozenset((dt.date.fromisoformat(d), dt.time.fromisoformat(t)) for d, t in doc["early"]))
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning("calendar cache {} unreadable ({}); rebuilding it", path, exc)
    closed, early = closed_days(code, hours), early_closes(code, hours)
    doc = {"closed": sorted(d.isoformat() for d in closed),
           "early": sorted([d.isoformat(), t.isoformat()] for d, t in early)}
    try:  # atomically: concurrent processes (a sweep's workers) never read half a file
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh)
        os.replace(tmp, path)
    except OSError as exc:  # a read-only home: work without the cache
        logger.debug("calendar cache {} not written: {}", path, exc)
    return closed, early
