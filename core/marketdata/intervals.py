"""Bar intervals, trading sessions and bar boundaries (pure, no I/O).

Anchoring rules (see docs/marketdata.md):

* Minute intervals (``1M`` .. ``240M``) on a session with fixed hours (e.g. US stocks 09:30-16:00
  America/New_York) are anchored to the session open: a 60M bar opens at 09:30, 10:30, ... and a
  240M bar at 09:30 and 13:30. The last bar of the session is cut at the session close (the 15:30
  60M bar closes at 16:00, the 13:30 240M bar closes at 16:00). Minutes at or after the close
  (extended hours) are anchored to the close instead. Intervals below 60M divide 09:30 evenly, so
  they coincide with clock flooring. On an early-close day (e.g. 13:00 on 24 December in New York)
  the close is that day's early close.
* On a 24-hour session minute bars are anchored to the start of the trading day: midnight UTC for
  crypto (plain clock flooring), the 17:00 New York roll for FX (so 60M bars start on whole UTC
  hours and 240M bars at 17:00, 21:00, 01:00 ... New York time).
* ``DAY``, ``WEEK`` and ``MON`` go by trading date (the local date, or for FX the date of the
  17:00 roll that ends the day). A bar's ``datetime`` is the start of the first trading date of the
  period (the day itself; the Monday of the week, even when that Monday is a holiday; the first of
  the month, even when it is a weekend): this is the *left label* that
  ``pandas.resample("W-MON", label="left", closed="left")`` and ``resample("MS")`` give. Its
  ``close_datetime`` is the end of the last trading day of the period (weekday in the session and
  not a listed holiday; its early close if it has one). Crypto calendar bars run midnight to
  midnight UTC; FX ones from the Sunday or weekday 17:00 New York roll to the 17:00 roll.
"""

import datetime as dt
from dataclasses import dataclass, field
from functools import lru_cache
from zoneinfo import ZoneInfo

__all__ = [
    "INTERVALS",
    "INTERVAL_MINUTES",
    "Session",
    "US_STOCK_RTH",
    "CRYPTO_GLOBAL",
    "FOREX_GLOBAL",
    "STOCK_HOURS",
    "normalize_interval",
    "interval_minutes",
    "is_intraday",
    "interval_rank",
    "session_for",
    "bar_open",
    "bar_close",
    "bar_span",
    "next_bar_close",
    "grid_end",
]

UTC = dt.timezone.utc
_DAY = dt.timedelta(days=1)

#: Every interval the protocol knows, finest first.
INTERVALS: tuple[str, ...] = ("1M", "3M", "5M", "10M", "15M", "30M", "60M", "120M", "240M", "DAY", "WEEK", "MON")

#: Length in minutes of each intraday interval.
INTERVAL_MINUTES: dict[str, int] = {
    "1M": 1, "3M": 3, "5M": 5, "10M": 10, "15M": 15, "30M": 30, "60M": 60, "120M": 120, "240M": 240,
}

_RANK = {iv: i for i, iv in enumerate(INTERVALS)}


def normalize_interval(s: str) -> str:
    """Return the canonical interval name for ``s`` (case-insensitive, e.g. ``"5m"`` -> ``"5M"``).

    :raises ValueError: listing the valid intervals when ``s`` is not one of them.
    """
    if isinstance(s, str):
        iv = s.strip().upper()
        if iv in _RANK:
            return iv
    raise ValueError(f"unknown interval {s!r}: use one of {' '.join(INTERVALS)} (M = minutes, MON = month)")


def interval_minutes(interval: str) -> int | None:
    """Minutes in an intraday interval, or None for DAY/WEEK/MON."""
    return INTERVAL_MINUTES.get(normalize_interval(interval))


def is_intraday(interval: str) -> bool:
    """True for the minute intervals (1M .. 240M)."""
    return normalize_interval(interval) in INTERVAL_MINUTES


def interval_rank(interval: str) -> int:
    """Position of the interval in :data:`INTERVALS` (0 = finest); used to order members."""
    return _RANK[normalize_interval(interval)]


# --------------------------------------------------------------------------- sessions


@lru_cache(maxsize=64)
def _zone(name: str) -> dt.tzinfo:
    if name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except Exception:  # ZoneInfoNotFoundError, ValueError
        raise ValueError(f"unknown time zone {name!r}: use an IANA name such as 'America/New_York' or 'UTC'") from None


def _aware(ts: dt.datetime) -> dt.datetime:
    if not isinstance(ts, dt.datetime):
        raise ValueError(f"expected a datetime, got {type(ts).__name__}: {ts!r}")
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts




_MIDNIGHT = dt.time(0)


@dataclass(frozen=True)
class Session:
    """A trading session: a time zone, daily open/close wall times, trading weekdays, holidays and
    early closes.

    ``open == close`` means a 24-hour session. At midnight (crypto) each trading day runs from
    00:00 to 24:00 of ``tz``; at any other time (FX: 17:00 America/New_York) the session **rolls
    over** there and a trading day runs from ``open`` on the evening before to ``open`` on the day
    itself, so the FX week opens on Sunday evening and closes on Friday evening. Overnight sessions
    with fixed hours (close before open) are not supported. ``weekdays`` uses Monday = 0; trading
    days are labelled by the date on which they close. ``early_closes`` holds ``(date, close time)``
    pairs for half days (fixed-hour sessions only).
    """

    name: str
    tz: str
    open: dt.time
    close: dt.time
    weekdays: frozenset[int] = frozenset(range(5))
    holidays: frozenset[dt.date] = field(default_factory=frozenset, repr=False)
    early_closes: frozenset[tuple[dt.date, dt.time]] = field(default_factory=frozenset, repr=False)
    _early: dict[dt.date, dt.time] = field(init=False, repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        if self.open != self.close and self.close < self.open:
            raise ValueError(f"session {self.name}: close {self.close} before open {self.open}; overnight sessions are not supported")
        if not self.weekdays or not set(self.weekdays) <= set(range(7)):
            raise ValueError(f"session {self.name}: weekdays must be a non-empty subset of 0..6 (Monday=0)")
        _zone(self.tz)  # validates the zone name
        for day, t in self.early_closes:
            if self.is_24h or not self.open < t < self.close:
                raise ValueError(f"session {self.name}: early close {t} on {day} must lie between the open "
                                 f"{self.open} and the close {self.close} of a fixed-hours session")
            self._early[day] = t

    @property
    def is_24h(self) -> bool:
        """True when the session trades around the clock on its weekdays."""
        return self.open == self.close

    @property
    def rolls_over(self) -> bool:
        """True for a 24-hour session whose trading day starts the evening before (open not at midnight)."""
        return self.open == self.close and self.open != _MIDNIGHT

    @property
    def zone(self) -> dt.tzinfo:
        """The session's tzinfo."""
        return _zone(self.tz)

    def with_holidays(self, days: "set[dt.date] | frozenset[dt.date] | list[dt.date]") -> "Session":
        """Return a copy of this session with ``days`` added to its holidays."""
        return Session(self.name, self.tz, self.open, self.close, self.weekdays,
                       frozenset(self.holidays) | frozenset(days), self.early_closes)

    def is_trading_day(self, day: dt.date) -> bool:
        """True when ``day`` (a trading date) is a trading weekday and not a holiday."""
        return day.weekday() in self.weekdays and day not in self.holidays

    def close_on(self, day: dt.date) -> dt.time:
        """The close wall time on ``day``: the early close when it is a half day, else ``close``."""
        return self._early.get(day, self.close) if self._early else self.close

    def local(self, ts: dt.datetime) -> dt.datetime:
        """``ts`` as a naive wall time in the session zone."""
        return _aware(ts).astimezone(self.zone).replace(tzinfo=None)

    def at(self, day: dt.date, t: dt.time) -> dt.datetime:
        """The UTC instant of wall time ``t`` on local date ``day``."""
        return dt.datetime.combine(day, t, self.zone).astimezone(UTC)

    def day_of(self, ts: dt.datetime) -> dt.date:
        """The trading date instant ``ts`` belongs to: its local date, or for a session that rolls
        over (FX) the date of the next roll (Sunday 18:00 New York belongs to Monday)."""
        loc = self.local(ts)
        if self.rolls_over:
            return (loc - dt.timedelta(hours=self.open.hour, minutes=self.open.minute)).date() + _DAY
        return loc.date()

    def day_start(self, day: dt.date) -> dt.datetime:
        """UTC start of trading date ``day``: the open, midnight, or the roll on the evening before."""
        if self.rolls_over:
            return self.at(day - _DAY, self.open)
        return self.at(day, self.open)

    def day_end(self, day: dt.date) -> dt.datetime:
        """UTC end of trading date ``day``: its (early) close, the next midnight, or the roll."""
        if self.rolls_over:
            return self.at(day, self.open)
        if self.is_24h:
            return self.at(day + _DAY, _MIDNIGHT)
        return self.at(day, self.close_on(day))

    def is_open(self, ts: dt.datetime) -> bool:
        """True when the market trades at instant ``ts`` (regular hours, trading day)."""
        day = self.day_of(ts)
        if not self.is_trading_day(day):
            return False
        if self.is_24h:
            return True
        return self.open <= self.local(ts).time() < self.close_on(day)

    def next_open(self, ts: dt.datetime) -> dt.datetime:
        """The first instant >= ``ts`` at which the session is open (searches up to 3 years ahead)."""
        if self.is_open(ts):
            return _aware(ts)
        day = self.day_of(ts)
        if self.is_trading_day(day) and _aware(ts) < self.day_start(day):
            return self.day_start(day)
        for _ in range(1100):
            day += _DAY
            if self.is_trading_day(day):
                return self.day_start(day)
        raise ValueError(f"session {self.name}: no trading day within 3 years after {ts}")


#: US stocks, regular trading hours.
US_STOCK_RTH = Session("US_STOCK_RTH", "America/New_York", dt.time(9, 30), dt.time(16, 0))
#: Crypto: 24 hours, 7 days, UTC.
CRYPTO_GLOBAL = Session("CRYPTO_GLOBAL", "UTC", dt.time(0), dt.time(0), frozenset(range(7)))
#: FX (and the default for futures and GLOBAL symbols): 24 hours, 5 days, rolling over at 17:00
#: New York (21:00 UTC in summer, 22:00 in winter): the week opens Sunday evening and closes
#: Friday evening; a trading day runs 17:00 to 17:00 and is labelled by the date it closes on.
FOREX_GLOBAL = Session("FOREX_GLOBAL", "America/New_York", dt.time(17), dt.time(17), frozenset(range(5)))

#: Regular hours of the stock markets :func:`session_for` knows, by country (no holidays: the
#: exchange calendars of :mod:`aitrados.marketdata.calendars` add them).
STOCK_HOURS: dict[str, Session] = {
    "US": US_STOCK_RTH,
    "UK": Session("UK_STOCK", "Europe/London", dt.time(8), dt.time(16, 30)),
    "DE": Session("DE_STOCK", "Europe/Berlin", dt.time(9), dt.time(17, 30)),
    "FR": Session("FR_STOCK", "Europe/Paris", dt.time(9), dt.time(17, 30)),
    "JP": Session("JP_STOCK", "Asia/Tokyo", dt.time(9), dt.time(15)),
    "HK": Session("HK_STOCK", "Asia/Hong_Kong", dt.time(9, 30), dt.time(16)),
    "CN": Session("CN_STOCK", "Asia/Shanghai", dt.time(9, 30), dt.time(15)),
    "AU": Session("AU_STOCK", "Australia/Sydney", dt.time(10), dt.time(16)),
    "CA": Session("CA_STOCK", "America/Toronto", dt.time(9, 30), dt.time(16)),
    "CH": Session("CH_STOCK", "Europe/Zurich", dt.time(9), dt.time(17, 30)),
}


def session_for(full_symbol: str) -> Session:
    """The default session of a symbol.

    :returns: for stocks and options of a known country, that exchange's regular hours with its
        holidays and early closes (:func:`aitrados.marketdata.calendars.stock_session`; lunch breaks
        ignored); :data:`CRYPTO_GLOBAL` (24/7) for crypto; :data:`FOREX_GLOBAL` (24/5, rolling over at
        17:00 New York) otherwise (FX, futures, GLOBAL).
    """
    from .models import parse_full_symbol

    asset, country, _ = parse_full_symbol(full_symbol)
    if asset == "CRYPTO":
        return CRYPTO_GLOBAL
    if asset in ("STOCK", "OPTION") and country in STOCK_HOURS:
        from .calendars import stock_session

        return stock_session(country)
    return FOREX_GLOBAL


# --------------------------------------------------------------------------- boundaries


def bar_open(ts: dt.datetime, interval: str, session: Session | None = None) -> dt.datetime:
    """Open time (UTC) of the ``interval`` bar that contains instant ``ts``.

    ``session`` defaults to 24h/7d UTC (crypto). Naive ``ts`` is taken as UTC.
    """
    iv = normalize_interval(interval)
    s = session or CRYPTO_GLOBAL
    ts = _aware(ts)
    n = INTERVAL_MINUTES.get(iv)
    if n is not None:
        if s.tz == "UTC" and s.is_24h and not s.rolls_over:
            secs = int(ts.timestamp()) // 60 * 60
            return dt.datetime.fromtimestamp(secs - secs % (n * 60), UTC)
        if s.is_24h:  # elapsed time from the start of the trading day (contiguous across DST)
            start_utc = s.day_start(s.day_of(ts))
            mins = (ts - start_utc) // dt.timedelta(minutes=1)
            return start_utc + dt.timedelta(minutes=(mins // n) * n)
        loc = s.local(ts)
        day = loc.date()
        close = s.close_on(day)
        if loc.time() >= close:
            anchor = dt.datetime.combine(day, close)
        else:
            anchor = dt.datetime.combine(day, s.open)
        mins = (loc - anchor) // dt.timedelta(minutes=1)
        start = anchor + dt.timedelta(minutes=(mins // n) * n)
        return start.replace(tzinfo=s.zone).astimezone(UTC)
    day = s.day_of(ts)
    if iv == "WEEK":
        day -= dt.timedelta(days=day.weekday())
    elif iv == "MON":
        day = day.replace(day=1)
    return s.day_start(day)


def _last_trading_day(first: dt.date, last: dt.date, s: Session) -> dt.date:
    d = last
    while d >= first:
        if s.is_trading_day(d):
            return d
        d -= _DAY
    d = last
    while d >= first:  # every day a holiday: fall back to the last session weekday
        if d.weekday() in s.weekdays:
            return d
        d -= _DAY
    return last


def bar_close(opened: dt.datetime, interval: str, session: Session | None = None) -> dt.datetime:
    """Close time (UTC) of the ``interval`` bar that opened at ``opened`` (see module doc for cuts)."""
    iv = normalize_interval(interval)
    s = session or CRYPTO_GLOBAL
    opened = _aware(opened)
    n = INTERVAL_MINUTES.get(iv)
    if n is not None:
        end = opened + dt.timedelta(minutes=n)
        if s.is_24h:
            return min(end, s.day_end(s.day_of(opened))).astimezone(UTC)
        loc = s.local(opened)
        cut = dt.datetime.combine(loc.date(), s.close_on(loc.date()))
        if loc < cut < loc + dt.timedelta(minutes=n):
            return cut.replace(tzinfo=s.zone).astimezone(UTC)
        return end.astimezone(UTC)
    first = s.day_of(opened)
    if iv == "DAY":
        last = first
    elif iv == "WEEK":
        last = first + dt.timedelta(days=6)
    else:
        nxt = (first.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
        last = nxt - _DAY
    end_day = _last_trading_day(first, last, s) if iv != "DAY" else first
    return s.day_end(end_day)


def bar_span(ts: dt.datetime, interval: str, session: Session | None = None) -> tuple[dt.datetime, dt.datetime]:
    """``(open, close)`` of the bar containing ``ts``."""
    o = bar_open(ts, interval, session)
    return o, bar_close(o, interval, session)


def grid_end(opened: dt.datetime, interval: str, session: Session | None = None) -> dt.datetime | None:
    """End of the contiguous run of ``interval`` bars that contains the bar opening at ``opened``.

    Inside that run the next bar opens where the previous one closed and lasts the interval (the last
    one is cut at the end): callers use it as a fast path instead of :func:`bar_open`/:func:`bar_close`.
    It is the end of the trading day on 24h sessions (the next midnight, or the roll), the (early)
    session close during regular hours, and None for calendar intervals or bars outside regular hours.
    """
    iv = normalize_interval(interval)
    if iv not in INTERVAL_MINUTES:
        return None
    s = session or CRYPTO_GLOBAL
    if s.is_24h:
        return s.day_end(s.day_of(opened))
    loc = s.local(opened)
    close = s.close_on(loc.date())
    if s.open <= loc.time() < close:
        return s.at(loc.date(), close)
    return None


def next_bar_close(after: dt.datetime, interval: str, session: Session | None = None) -> dt.datetime:
    """The first close time strictly after ``after`` of a bar that trades (its open is in session,
    on a trading day). This is when the next bar of this interval is due."""
    s = session or CRYPTO_GLOBAL
    iv = normalize_interval(interval)
    t = _aware(after)
    for _ in range(5000):
        o, c = bar_span(t, iv, s)
        if c > after and _trades(o, c, iv, s):
            return c
        if iv in INTERVAL_MINUTES:
            t = c if c > t else t + dt.timedelta(minutes=1)
            if not s.is_open(t):
                t = s.next_open(t)
        else:  # jump to the start of the next calendar period
            d = s.day_of(o)
            if iv == "DAY":
                d += _DAY
            elif iv == "WEEK":
                d += dt.timedelta(days=7)
            else:
                d = (d.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
            t = s.day_start(d)
    raise ValueError(f"no {iv} bar close found after {after} for session {s.name}")


def _trades(o: dt.datetime, c: dt.datetime, iv: str, s: Session) -> bool:
    if iv in INTERVAL_MINUTES:
        return s.is_open(o)
    # calendar bars trade if any day of the period is a trading day
    first = s.day_of(o)
    last = s.day_of(c - dt.timedelta(microseconds=1))
    d = first
    while d <= last:
        if s.is_trading_day(d):
            return True
        d += _DAY
    return False
