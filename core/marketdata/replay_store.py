"""The replay server's data: bars, news, calendar events, holidays and references, queried by time.

Sources (see docs/replay.md):

* bar files (bundled S&P 500 / NASDAQ daily CSVs, the user's CSV/Parquet files) loaded through
  :mod:`aitrados.marketdata.loader` (bad rows are reported with file and line and skipped);
  coarser intervals are aggregated from the finest file interval (DAY -> WEEK, MON);
* the seeded 1-minute generator (:mod:`aitrados.marketdata.generator`) for ``replay_symbols``
  (or any well-formed symbol with ``generate_any``) over ``[start - history_days, end)`` where
  ``end`` is ``start + days``, an explicit time, or ``"data_end"`` (the files' last bar close);
  a window needing more than :data:`MAX_GENERATED_MINUTES` generated bars is refused;
  every other interval is aggregated from those 1-minute bars with the chart's own
  :func:`~aitrados.marketdata.chart.resample_bars`;
* news and calendar JSON/CSV files; holidays from JSON/CSV files, plus, for the US and every
  served stock's country without such a file, the exchange calendar's closed days and early closes
  (the same calendar the generator trades by, so ``/holiday/list`` and the bars agree).

The WebSocket stream (:meth:`ReplayStore.stream_bars`) holds one interval per symbol: 1M for
generated symbols, else the finest interval of its files (DAY for the bundled daily data).

Every query takes ``asof`` (the replay clock): nothing that closed or happened after it is
returned (no look-ahead). Files are read once at construction; queries do no I/O.
"""

from __future__ import annotations

import bisect
import csv
import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from loguru import logger

from .chart import can_aggregate, resample_bars
from .errors import MarketDataError, UnknownSymbolError
from .generator import iter_bars, price_model
from .calendars import stock_session
from .intervals import INTERVALS, STOCK_HOURS, normalize_interval, session_for
from .replay_reference import exchange_code, load_records, reference_extras
from .loader import (
    DataIssue,
    bundled_bar_files,
    bundled_data_dir,
    load_bars,
    load_calendar,
    load_news,
)
from .models import (
    Bar,
    CalendarEvent,
    NewsItem,
    bar_to_record,
    event_to_record,
    format_timestamp,
    news_to_record,
    normalize_full_symbol,
    parse_full_symbol,
    parse_timestamp,
)

UTC = dt.timezone.utc
DEFAULT_REPLAY_START = dt.datetime(2018, 12, 24, 14, 30, tzinfo=UTC)
DATA_END = "data_end"
DATA_START = "data_start"
"""``end`` value meaning: up to the last bar close of the file data (the bundled daily bars: 2018-12-31)."""
MAX_GENERATED_MINUTES = 3_000_000
"""Budget of generated 1-minute bars (symbols x minutes of the window): beyond it the store refuses
to start instead of spending minutes and gigabytes (20 years x 4 symbols would be ~40 million bars)."""


class UnavailableInterval(MarketDataError, LookupError):
    """The symbol exists but not at this interval; ``available`` lists the intervals it has."""

    def __init__(self, full_symbol: str, interval: str, available: list[str]) -> None:
        super().__init__(f"no {interval} bars for {full_symbol} in the replay data; "
                         f"available intervals: {' '.join(available)}")
        self.available = available


@dataclass
class Series:
    """Bars of one (symbol, interval), oldest first, with their open and close times for bisecting."""

    bars: list[Bar]
    opens: list[dt.datetime] = field(init=False)
    closes: list[dt.datetime] = field(init=False)

    def __post_init__(self) -> None:
        self.opens = [b.datetime for b in self.bars]
        self.closes = [b.close_datetime for b in self.bars]

    def closed_upto(self, asof: dt.datetime) -> int:
        """Number of leading bars closed at ``asof`` (close_datetime <= asof)."""
        return bisect.bisect_right(self.closes, asof)

    def window(self, asof: dt.datetime, start: dt.datetime | None = None,
               end: dt.datetime | None = None) -> tuple[int, int]:
        """Index range ``[i, j)`` of closed bars (at ``asof``) opening within ``[start, end]``."""
        j = self.closed_upto(asof)
        if end is not None:
            j = min(j, bisect.bisect_right(self.opens, end))
        i = 0 if start is None else bisect.bisect_left(self.opens, start)
        return i, max(i, j)


# --------------------------------------------------------------------------- holidays


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> dt.date:
    d = dt.date(year, month, 1)
    d += dt.timedelta(days=(weekday - d.weekday()) % 7)
    return d + dt.timedelta(weeks=n - 1)


def _last_weekday(year: int, month: int, weekday: int) -> dt.date:
    d = (dt.date(year, month, 28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(days=1)
    return d - dt.timedelta(days=(d.weekday() - weekday) % 7)


def _observed(year: int, month: int, day: int) -> dt.date:
    d = dt.date(year, month, day)
    if d.weekday() == 5:
        return d - dt.timedelta(days=1)
    if d.weekday() == 6:
        return d + dt.timedelta(days=1)
    return d


def _easter(year: int) -> dt.date:
    """Gregorian Easter Sunday (anonymous Gregorian algorithm)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = b // 4, b % 4
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = c // 4, c % 4
    l_ = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * l_) // 451
    month = (h + l_ - 7 * m + 114) // 31
    day = (h + l_ - 7 * m + 114) % 31 + 1
    return dt.date(year, month, day)


def us_holiday_name(day: dt.date) -> tuple[str, str]:
    """``(holiday_code, name)`` of a US stock-market closed weekday by the exchange's usual rules;
    ``("UNSCHEDULED_CLOSURE", ...)`` when no rule matches (e.g. 2001-09-11, 2012-10-29)."""
    y = day.year
    rules = {
        _observed(y, 1, 1): ("NEW_YEARS_DAY", "New Year's Day"),
        _nth_weekday(y, 1, 0, 3): ("MARTIN_LUTHER_KING_JR_DAY", "Martin Luther King Jr. Day"),
        _nth_weekday(y, 2, 0, 3): ("PRESIDENTS_DAY", "Presidents' Day"),
        _easter(y) - dt.timedelta(days=2): ("GOOD_FRIDAY", "Good Friday"),
        _last_weekday(y, 5, 0): ("MEMORIAL_DAY", "Memorial Day"),
        _observed(y, 7, 4): ("INDEPENDENCE_DAY", "Independence Day"),
        _nth_weekday(y, 9, 0, 1): ("LABOR_DAY", "Labor Day"),
        _nth_weekday(y, 11, 3, 4): ("THANKSGIVING_DAY", "Thanksgiving Day"),
        _observed(y, 12, 25): ("CHRISTMAS_DAY", "Christmas Day"),
    }
    if y >= 2022:
        rules[_observed(y, 6, 19)] = ("JUNETEENTH", "Juneteenth National Independence Day")
    return rules.get(day, ("UNSCHEDULED_CLOSURE", "Market closed (unscheduled)"))


def us_early_close_name(day: dt.date) -> tuple[str, str]:
    """``(holiday_code, name)`` of a US stock-market half day (13:00 close)."""
    if day.month == 12 and day.day == 24:
        return "CHRISTMAS_EVE", "Christmas Eve (early close)"
    if day.month == 7 and day.day in (2, 3):
        return "INDEPENDENCE_DAY_EVE", "Day before Independence Day (early close)"
    if day.month == 11 and day == _nth_weekday(day.year, 11, 3, 4) + dt.timedelta(days=1):
        return "DAY_AFTER_THANKSGIVING", "Day after Thanksgiving (early close)"
    return "EARLY_CLOSE", "Early close"


def exchange_holidays(country: str, first: dt.date, last: dt.date) -> list[dict[str, Any]]:
    """Holiday records of a country's stock exchange in ``[first, last]``, from the same calendar as
    the generator, the loader and the aligner (:func:`~aitrados.marketdata.calendars.stock_session`).

    Closed weekdays have ``session_template`` ``CLOSED`` and null open/close timestamps; half days
    have ``EARLY_CLOSE`` with their open and (early) close timestamps. US days are named by the
    exchange's rules (``UNSCHEDULED_CLOSURE`` for 2001-09-11, 2012-10-29 ...); other countries'
    closures are ``EXCHANGE_HOLIDAY``.
    """
    c = country.upper()
    s = stock_session(c)
    out: list[tuple[dt.date, dict[str, Any]]] = []
    base = {"asset_name": "stock", "country_iso_code": c, "symbol": "*", "priority": 1}
    for day in s.holidays:
        if first <= day <= last:
            code, name = us_holiday_name(day) if c == "US" else ("EXCHANGE_HOLIDAY", "Exchange holiday")
            out.append((day, {"name": name, "holiday_code": code, "calendar_date": day.isoformat(), **base,
                              "session_template": "CLOSED", "open_timestamp": None, "close_timestamp": None}))
    for day, _ in s.early_closes:
        if first <= day <= last:
            code, name = us_early_close_name(day) if c == "US" else ("EARLY_CLOSE", "Early close")
            out.append((day, {"name": name, "holiday_code": code, "calendar_date": day.isoformat(), **base,
                              "session_template": "EARLY_CLOSE",
                              "open_timestamp": format_timestamp(s.day_start(day)),
                              "close_timestamp": format_timestamp(s.day_end(day))}))
    out.sort(key=lambda x: x[0])
    return [r for _, r in out]


def load_holidays(path: str | Path) -> tuple[list[dict[str, Any]], list[DataIssue]]:
    """Holiday records from a JSON array or CSV with the protocol's names (``calendar_date``,
    ``holiday_code``, ``name``, ``asset_name``, ``country_iso_code``, ``symbol`` ...).

    :returns: the good records and the issues (file, line) of the rows skipped.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"holiday file not found: {p}")
    issues: list[DataIssue] = []
    rows: list[tuple[int, Any]]
    if p.suffix.lower() == ".csv":
        with p.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            rows = [(reader.line_num, r) for r in reader]
    else:
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            return [], [DataIssue(str(p), e.lineno, "malformed", f"invalid JSON: {e.msg}")]
        if isinstance(data, dict):
            data = data.get("data", [])
        rows = [(1, r) for r in data] if isinstance(data, list) else []
    out = []
    for line, r in rows:
        try:
            if not isinstance(r, dict):
                raise ValueError("record is not an object")
            day = dt.date.fromisoformat(str(r.get("calendar_date", "")).strip()[:10])
            code = str(r.get("holiday_code") or "").strip().upper()
            if not code:
                raise ValueError("missing field 'holiday_code'")
        except ValueError as e:
            issues.append(DataIssue(str(p), line, "malformed", f"holiday: {e}"))
            continue
        rec = {"name": r.get("name") or code, "holiday_code": code, "calendar_date": day.isoformat(),
               "asset_name": str(r.get("asset_name") or "stock").lower(),
               "country_iso_code": str(r.get("country_iso_code") or "US").upper(),
               "symbol": str(r.get("symbol") or "*").upper(), "priority": r.get("priority") or 1,
               "session_template": r.get("session_template") or "CLOSED",
               "open_timestamp": r.get("open_timestamp") or None, "close_timestamp": r.get("close_timestamp") or None}
        out.append(rec)
    for i in issues:
        logger.warning("data issue {}", i)
    return out, issues


# --------------------------------------------------------------------------- the store


_SESSION_META = {
    "US_STOCK_RTH": ("US_STOCK_RTH", 390),
    "CRYPTO_GLOBAL": ("CRYPTO_GLOBAL", 1440),
    "FOREX_GLOBAL": ("FOREX_GLOBAL", 1440),
}


def bar_file_spec(f: Any) -> tuple[Path, str | None, str | None]:
    """``(path, full_symbol, interval)`` of a ``replay_bar_files`` entry (a path, or a table /
    :class:`~aitrados.marketdata.settings.BarFile` with ``path``, ``full_symbol``, ``interval``)."""
    if isinstance(f, (str, Path)):
        return Path(f), None, None
    get = f.get if isinstance(f, dict) else (lambda k, d=None: getattr(f, k, d))
    return Path(get("path")), get("full_symbol"), get("interval")


class ReplayStore:
    """Everything the replay server serves, indexed for time queries.

    :param start: replay clock start (UTC)
    :param days: days of replay after ``start`` (the replay window), when ``end`` is not given
    :param end: end of the replay window (a time after ``start``), or ``"data_end"`` for the last
        bar close of the file data (the bundled daily bars end 2018-12-31); overrides ``days``
    :param history_days: days of generated bars before ``start`` (for hydrating charts)
    :param seed: generator seed
    :param generated_symbols: symbols given generated 1-minute bars
    :param generate_any: generate bars on first use for any well-formed symbol
    :param bar_files: user CSV/Parquet bar files (name ``ASSET_COUNTRY_SYMBOL_INTERVAL.csv`` or
        with symbol/interval columns)
    :param news_files, calendar_files, holiday_files: JSON/CSV files
    :param bundled: include the bundled daily bars, sample news and sample calendar
    """

    def __init__(self, *, start: dt.datetime | str | None = None, days: float = 3, history_days: float = 5,
                 seed: int = 7, generated_symbols: Iterable[str] = (), generate_any: bool = False,
                 bar_files: Iterable[Any] = (), news_files: Iterable[str | Path] = (),
                 calendar_files: Iterable[str | Path] = (), holiday_files: Iterable[str | Path] = (),
                 bundled: bool = True, end: dt.datetime | str | None = None) -> None:
        from_data = isinstance(start, str) and start.strip().lower() == DATA_START
        self.start = parse_timestamp(start) if start is not None and not from_data else DEFAULT_REPLAY_START
        self.end = self.start + dt.timedelta(days=days)
        self.data_start = self.start - dt.timedelta(days=history_days)
        self.seed = seed
        self.generate_any = generate_any
        self.issues: list[DataIssue] = []
        self._file_series: dict[str, dict[str, list[Bar]]] = {}  # symbol -> interval -> bars
        self._generated: set[str] = set()
        self._series: dict[tuple[str, str], Series] = {}
        self._m1_cache: dict[str, list[Bar]] = {}
        self.holidays: list[dict[str, Any]] = []

        files: list[tuple[Path, str | None, str | None]] = []
        if bundled:
            files += [(p, None, None) for p in bundled_bar_files().values()]
        files += [bar_file_spec(f) for f in bar_files]
        for f, fsym, fiv in files:
            res = load_bars(f, fsym, fiv)
            self.issues += res.issues
            if res.bars:
                b0 = res.bars[0]
                self._file_series.setdefault(b0.full_symbol, {})[b0.interval] = res.bars
                logger.debug("replay data: {} {} bars of {} {} from {}", len(res.bars), b0.interval,
                            b0.full_symbol, b0.interval, f)
        if from_data:  # the first bar of the files (read once, here)
            opens = [ivs[iv][0].datetime for ivs in self._file_series.values() for iv in ivs if ivs[iv]]
            if not opens:
                raise ValueError("replay start 'data_start' needs bar files (replay_bundled=True or "
                                 "replay_bar_files); none are loaded: give replay_start as a time")
            self.start = min(opens)
            self.end = self.start + dt.timedelta(days=days)
            self.data_start = self.start - dt.timedelta(days=history_days)
        for fs in generated_symbols:
            self._generated.add(normalize_full_symbol(fs))
        if end is not None:
            self.end = self._resolve_end(end)
        self._check_generation_budget()

        news: list[NewsItem] = []
        events: list[CalendarEvent] = []
        if bundled:
            news_files = [*sorted((bundled_data_dir() / "news").glob("*.json")), *news_files]
            calendar_files = [*sorted((bundled_data_dir() / "calendar").glob("*.json")), *calendar_files]
        for f in news_files:
            r = load_news(f)
            self.issues += r.issues
            news += r.records
        for f in calendar_files:
            r = load_calendar(f)
            self.issues += r.issues
            events += r.records
        # options and corporate actions: the bundled samples (synthetic chains, announced actions)
        self.options: list[dict[str, Any]] = []
        self.corporate_actions: list[dict[str, Any]] = []
        if bundled:
            self.options = load_records(sorted((bundled_data_dir() / "options").glob("*.json")))
            self.corporate_actions = load_records(sorted((bundled_data_dir() / "corporate_actions").glob("*.json")))
        news.sort(key=lambda n: n.published_date)
        events.sort(key=lambda e: e.event_timestamp)
        self.news = news
        self.news_times = [n.published_date for n in news]
        self.events = events
        self.event_times = [e.event_timestamp for e in events]

        for f in holiday_files:
            recs, iss = load_holidays(f)
            self.holidays += recs
            self.issues += iss
        self.holidays += self._calendar_holidays({h["country_iso_code"] for h in self.holidays})
        self.holidays.sort(key=lambda h: h["calendar_date"])

    def _calendar_holidays(self, from_files: set[str]) -> list[dict[str, Any]]:
        """Exchange-calendar holiday records (US, and the country of every served stock) for the
        whole years spanned by the file bars and the replay window; countries with a holiday file
        (``from_files``) keep only the file's records."""
        firsts = [self.data_start.date()] + [b[0].datetime.date() for ivs in self._file_series.values() for b in ivs.values() if b]
        lasts = [self.end.date()] + [b[-1].datetime.date() for ivs in self._file_series.values() for b in ivs.values() if b]
        first, last = dt.date(min(firsts).year, 1, 1), dt.date(max(lasts).year, 12, 31)
        countries = {"US"} | {parse_full_symbol(fs)[1] for fs in self.symbols()
                              if parse_full_symbol(fs)[0] in ("STOCK", "OPTION")}
        out: list[dict[str, Any]] = []
        for c in sorted(countries - from_files):
            if c in STOCK_HOURS:
                out += exchange_holidays(c, first, last)
        return out

    def _resolve_end(self, end: dt.datetime | str) -> dt.datetime:
        """The window end for an ``end`` argument (a time, or ``"data_end"``).

        :raises ValueError: ``end`` not after ``start``, or ``data_end`` without file bars after ``start``
        """
        if isinstance(end, str) and end.strip().lower() == DATA_END:
            closes = [ivs[iv][-1].close_datetime for ivs in self._file_series.values() for iv in ivs if ivs[iv]]
            if not closes:
                raise ValueError("replay end 'data_end' needs bar files (replay_bundled=True or replay_bar_files); "
                                 "none are loaded: give replay_end as a time or use replay_days")
            t = max(closes)
            if t <= self.start:
                raise ValueError(f"replay end 'data_end' is {format_timestamp(t)}, not after the replay start "
                                 f"{format_timestamp(self.start)}: choose an earlier replay_start")
            return t
        t = parse_timestamp(end)
        if t <= self.start:
            raise ValueError(f"replay end {format_timestamp(t)} is not after the replay start "
                             f"{format_timestamp(self.start)}: set replay_end later (or leave it unset and use replay_days)")
        return t

    def _check_generation_budget(self) -> None:
        """Refuse a window whose generated 1-minute bars would take minutes and gigabytes.

        :raises ValueError: saying how to run a long daily replay (``replay_symbols=[]``)
        """
        n = len(self._generated) + (1 if self.generate_any else 0)
        minutes = (self.end - self.data_start).total_seconds() / 60.0
        if n and n * minutes > MAX_GENERATED_MINUTES:
            raise ValueError(
                f"the replay window {format_timestamp(self.data_start)} .. {format_timestamp(self.end)} would need "
                f"about {int(n * minutes):,} generated 1-minute bars for {n} symbol(s) "
                f"({', '.join(sorted(self._generated)) or 'generate_any'}); the limit is {MAX_GENERATED_MINUTES:,}. "
                "For a long daily replay of the bundled data set replay_symbols=[] "
                "(AITRADOS_MARKETDATA__REPLAY_SYMBOLS='[]') and replay_generate_any=False, "
                "or shorten the window (replay_days / replay_end / replay_history_days)")

    # ------------------------------------------------------------------ symbols

    def symbols(self) -> list[str]:
        """Every symbol the store serves, sorted."""
        return sorted(set(self._file_series) | self._generated)

    def resolve(self, full_symbol: str) -> str:
        """Canonical symbol if served (generating it when ``generate_any``).

        :raises ValueError: malformed symbol; :raises UnknownSymbolError: not served.
        """
        fs = normalize_full_symbol(full_symbol)
        if fs in self._file_series or fs in self._generated:
            return fs
        if self.generate_any:
            self._generated.add(fs)
            return fs
        available = self.symbols()
        raise UnknownSymbolError(f"no replay data for {fs}; available symbols: {', '.join(available) or 'none'}",
                                 available=available, full_symbol=fs)

    def intervals(self, full_symbol: str) -> list[str]:
        """The intervals served for a (resolved) symbol, finest first."""
        if full_symbol in self._generated:
            return list(INTERVALS)
        have = self._file_series.get(full_symbol, {})
        return [iv for iv in INTERVALS if iv in have or any(can_aggregate(src, iv) for src in have)]

    def is_generated(self, full_symbol: str) -> bool:
        """True when the symbol's intraday bars come from the generator."""
        return full_symbol in self._generated

    # ------------------------------------------------------------------ bars

    def minute_bars(self, full_symbol: str) -> list[Bar]:
        """All 1-minute bars of a symbol in the data window (generated or from a 1M file)."""
        fs = self.resolve(full_symbol)
        return self.series(fs, "1M").bars

    def series(self, full_symbol: str, interval: str) -> Series:
        """The bars of one (symbol, interval), built on first use and cached.

        :raises UnknownSymbolError, UnavailableInterval, ValueError (bad interval)
        """
        fs = self.resolve(full_symbol)
        iv = normalize_interval(interval)
        key = (fs, iv)
        s = self._series.get(key)
        if s is not None:
            return s
        have = self._file_series.get(fs, {})
        if iv in have:
            bars = have[iv]
        elif fs in self._generated and (iv == "1M" or not any(can_aggregate(src, iv) for src in have)):
            m1 = self._generate(fs)
            bars = m1 if iv == "1M" else self._aggregate(m1, iv, self.end)
        else:
            src = next((s_ for s_ in INTERVALS if s_ in have and can_aggregate(s_, iv)), None)
            if src is None:
                raise UnavailableInterval(fs, iv, self.intervals(fs))
            last_close = have[src][-1].close_datetime
            bars = self._aggregate(have[src], iv, last_close)
        s = Series(bars)
        self._series[key] = s
        return s

    def _generate(self, fs: str) -> list[Bar]:
        m1 = self._m1_cache.get(fs)
        if m1 is None:
            m1 = list(iter_bars(fs, self.data_start, self.end, seed=self.seed))
            self._m1_cache[fs] = m1
            logger.debug("replay data: generated {} 1M bars of {} ({} .. {})", len(m1), fs, self.data_start, self.end)
        return m1

    @staticmethod
    def _aggregate(bars: list[Bar], iv: str, data_end: dt.datetime) -> list[Bar]:
        """Aggregate, keeping only buckets complete within the data (close <= data_end)."""
        out = resample_bars(bars, iv, include_partial=True)
        return [b if b.closed else msgspec.structs.replace(b, closed=True)
                for b in out if b.close_datetime <= data_end]

    def bars(self, full_symbol: str, interval: str, asof: dt.datetime, start: dt.datetime | None = None,
             end: dt.datetime | None = None) -> list[Bar]:
        """Closed bars at ``asof`` opening within ``[start, end]``, oldest first."""
        s = self.series(full_symbol, interval)
        i, j = s.window(asof, start, end)
        return s.bars[i:j]

    def latest_bars(self, full_symbol: str, interval: str, asof: dt.datetime, limit: int) -> list[Bar]:
        """The last ``limit`` bars closed at ``asof``, oldest first."""
        s = self.series(full_symbol, interval)
        j = s.closed_upto(asof)
        return s.bars[max(0, j - limit):j]

    def stream_interval(self, full_symbol: str) -> str:
        """The interval the WebSocket pushes for a served symbol: ``1M`` for generated symbols,
        else the finest interval stored in its files (``DAY`` for the bundled daily data)."""
        fs = self.resolve(full_symbol)
        if fs in self._generated:
            return "1M"
        have = self._file_series[fs]
        return next(iv for iv in INTERVALS if iv in have)

    def stream_bars(self) -> list[Bar]:
        """The bars that close inside the replay window ``(start, end]``: what the WebSocket
        pushes as the clock runs. Each symbol streams one interval (:meth:`stream_interval`):
        generated symbols and 1M files their 1-minute bars, other file symbols their finest
        stored interval (the bundled daily symbols their DAY bars). Sorted by symbol, then time."""
        out: list[Bar] = []
        for fs in self.symbols():
            s = self.series(fs, self.stream_interval(fs))
            i = bisect.bisect_right(s.closes, self.start)
            j = bisect.bisect_right(s.closes, self.end)
            out += s.bars[i:j]
        return out

    # ------------------------------------------------------------------ news / events

    def news_upto(self, asof: dt.datetime) -> list[NewsItem]:
        """News published at or before ``asof``, oldest first."""
        return self.news[:bisect.bisect_right(self.news_times, asof)]

    def events_all(self) -> list[CalendarEvent]:
        """Every calendar event, oldest first (values of future ones are masked by the API)."""
        return self.events

    def event_codes(self, country: str) -> dict[str, str]:
        """``{event_code: event_name}`` of one country's events."""
        c = country.upper()
        return {e.event_code: e.event_name for e in self.events if e.country_iso_code == c}

    def holiday_codes(self, country: str) -> dict[str, str]:
        """``{holiday_code: name}`` of one country's holidays."""
        c = country.upper()
        return {h["holiday_code"]: h["name"] for h in self.holidays if h["country_iso_code"] == c}

    # ------------------------------------------------------------------ reference

    def reference(self, full_symbol: str) -> dict[str, Any]:
        """An asset reference record (§1.7) built from the symbol and its session; generated
        symbols also carry the generator's ``price_precision`` and ``tick_size``."""
        fs = self.resolve(full_symbol)
        asset, country, symbol = parse_full_symbol(fs)
        s = session_for(fs)
        template, minutes = _SESSION_META.get(s.name, (s.name, 1440 if s.is_24h else None))
        if minutes is None:
            minutes = (dt.datetime.combine(dt.date(2000, 1, 1), s.close)
                       - dt.datetime.combine(dt.date(2000, 1, 1), s.open)).seconds // 60
        hours = (f"{s.open.strftime('%H:%M:%S')}-{s.close.strftime('%H:%M:%S')}"
                 if not s.is_24h or s.rolls_over else "00:00:00-24:00:00")
        rec: dict[str, Any] = {
            "exchange": exchange_code(fs), "name": symbol, "currency": "USD" if country in ("US", "GLOBAL") else None,
            "calendar_key": template, "open_time": s.open.strftime("%H:%M:%S"),
            "close_time": s.close.strftime("%H:%M:%S"), "time_zone": s.tz,
            "description": f"{fs} (local replay data: {'generated 1-minute bars' if fs in self._generated else 'files'})",
            "asset_subtype": None, "support_dst": s.tz != "UTC", "underlying_name": symbol,
            "country_iso_code": country, "session_template": template,
            "trading_hours": {"regular_trading": [hours], "pre_market_trading": [], "post_market_trading": []},
            "asset_schema": asset.lower(), "industry": None, "support_week_trading": 6 in s.weekdays,
            "symbol": symbol, "status": "active", "daily_minute_count": minutes,
            "intervals": self.intervals(fs), "replay_generated": fs in self._generated,
            "replay_stream_interval": self.stream_interval(fs),
        }
        if asset in ("FOREX", "CRYPTO") and len(symbol) >= 6:
            rec["base_currency"], rec["quote_currency"] = symbol[:-3], symbol[-3:]
        # the generator's rounding: 5 decimals for EURUSD, 3 for USDJPY, 2 for stocks
        dec = price_model(fs, self.seed).decimals if fs in self._generated else None
        rec.update(reference_extras(fs, dec, self.listing_date(fs)))
        return rec

    def listing_date(self, full_symbol: str) -> dt.date | None:
        """The first day this store has bars of *full_symbol* (its listing date as far as the replay knows)."""
        fs = self.resolve(full_symbol)
        if fs in self._generated:
            return self.data_start.date()
        firsts = [bars[0].datetime.date() for bars in self._file_series.get(fs, {}).values() if bars]
        return min(firsts) if firsts else None


def ws_bar_record(bar: Bar) -> dict[str, Any]:
    """A bar as the WebSocket pushes it: §1.6 fields, lower-case ``asset_schema``, ``trading_session``."""
    rec = bar_to_record(bar, asset_case="lower")
    rec["trading_session"] = "RTH"
    return rec


def news_record(item: NewsItem) -> dict[str, Any]:
    """A news item as the protocol sends it."""
    return news_to_record(item)


def event_record(ev: CalendarEvent, asof: dt.datetime | None = None) -> dict[str, Any]:
    """An event as the protocol sends it; when it lies after ``asof`` its outcome (actual value,
    change) is masked to ``None`` so a replay never shows a number before its release."""
    rec = event_to_record(ev)
    if asof is not None and ev.event_timestamp > asof:
        rec["actual_value"] = rec["change"] = rec["change_percent"] = None
    return rec


__all__ = ["ReplayStore", "Series", "UnavailableInterval", "exchange_holidays",
           "load_holidays", "us_holiday_name", "us_early_close_name", "ws_bar_record", "news_record", "event_record",
           "format_timestamp", "DEFAULT_REPLAY_START", "DATA_END", "MAX_GENERATED_MINUTES"]
