"""Load bars, news and calendar events from local files, reporting every bad row (file I/O at the edge).

Bars: CSV, or Parquet when ``pyarrow`` (or ``fastparquet``) is importable. Column mapping
(``our field -> column in the file``):

* ``AITRADOS_COLUMNS`` (default): the protocol's names ``datetime, close_datetime, open, high, low,
  close, volume, vwap`` (+ optional ``asset_schema, country_iso_code, symbol, interval``).
* ``YAHOO_COLUMNS``: ``Date, Open, High, Low, Close, Volume`` (``Adj Close`` is ignored) with
  ``M/D/YYYY`` or ``YYYY-MM-DD`` dates. Picked automatically when the header has ``Date`` and ``Open``.
* any mapping you pass.

Date-only values on DAY/WEEK/MON files are placed at the session open of that day (the bar's open
time by :mod:`~aitrados.marketdata.intervals`); ``close_datetime`` is computed when absent.

Every problem becomes a :class:`DataIssue` ``(file, line, kind, message)`` and is logged; the row is
skipped unless the kind is ``gap`` (information only). Kinds: ``missing_column``, ``malformed``
(number or date), ``inconsistent`` (high < low, open/close outside [low, high], negative volume),
``duplicate`` (same open time as an earlier row: the first wins), ``out_of_order`` (older than the
previous served row), ``gap`` (missing bars: any missing session bar for intraday files; more than
``gap_days`` consecutive missing trading days for daily files). Trading days and hours come from the
symbol's session (:func:`~aitrados.marketdata.intervals.session_for`): exchange holidays and early
closes for stocks, FX weekends (Friday 17:00 to Sunday 17:00 New York), crypto 24/7, so real closures
are not reported. Nothing is silently corrected.
"""

import csv
import datetime as dt
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from loguru import logger

from .errors import MarketDataError
from .intervals import (
    INTERVAL_MINUTES,
    Session,
    bar_close,
    bar_open,
    next_bar_close,
    normalize_interval,
    session_for,
)
from .models import (
    Bar,
    CalendarEvent,
    NewsItem,
    bar_problems,
    event_from_record,
    news_from_record,
    normalize_full_symbol,
    parse_timestamp,
)

__all__ = [
    "AITRADOS_COLUMNS",
    "YAHOO_COLUMNS",
    "DataIssue",
    "LoadResult",
    "load_bars",
    "load_news",
    "load_calendar",
    "symbol_from_filename",
    "bar_filename",
    "bundled_data_dir",
    "bundled_bar_files",
]

AITRADOS_COLUMNS: dict[str, str] = {
    "datetime": "datetime",
    "close_datetime": "close_datetime",
    "open": "open",
    "high": "high",
    "low": "low",
    "close": "close",
    "volume": "volume",
    "vwap": "vwap",
}
YAHOO_COLUMNS: dict[str, str] = {
    "datetime": "Date",
    "open": "Open",
    "high": "High",
    "low": "Low",
    "close": "Close",
    "volume": "Volume",
}
_REQUIRED = ("datetime", "open", "high", "low", "close")
_MAX_LOGGED = 20


class DataIssue(msgspec.Struct, frozen=True):
    """One problem found in a data file: where (``file``, 1-based ``line``; for Parquet the 1-based
    row, for JSON the line where the record starts), what ``kind`` and a human ``message``."""

    file: str
    line: int
    kind: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.kind}: {self.message}"


@dataclass
class LoadResult:
    """What a loader returns: the good records (oldest first) and the issues found."""

    records: list[Any] = field(default_factory=list)
    issues: list[DataIssue] = field(default_factory=list)

    @property
    def bars(self) -> list[Bar]:
        """The records, for bar files."""
        return self.records

    def issues_of(self, kind: str) -> list[DataIssue]:
        """The issues of one kind."""
        return [i for i in self.issues if i.kind == kind]


# --------------------------------------------------------------------------- naming

_FNAME = re.compile(r"^(?P<asset>[A-Za-z]+)_(?P<country>[A-Za-z]+)_(?P<symbol>.+)_(?P<interval>[0-9]+M|DAY|WEEK|MON)$", re.I)


def symbol_from_filename(path: str | Path) -> tuple[str, str] | None:
    """``(full_symbol, interval)`` from a file named ``ASSET_COUNTRY_SYMBOL_INTERVAL.ext``
    (e.g. ``STOCK_US_SPX_DAY.csv``), or None when the name does not follow the convention."""
    m = _FNAME.match(Path(path).name.split(".")[0])
    if not m:
        return None
    try:
        return (
            normalize_full_symbol(f"{m['asset']}:{m['country']}:{m['symbol']}"),
            normalize_interval(m["interval"]),
        )
    except ValueError:
        return None


def bar_filename(full_symbol: str, interval: str, ext: str = "csv") -> str:
    """The conventional file name for a symbol's bars, e.g. ``STOCK_US_SPX_DAY.csv``."""
    return f"{normalize_full_symbol(full_symbol).replace(':', '_')}_{normalize_interval(interval)}.{ext}"


def bundled_data_dir() -> Path:
    """The directory of the data shipped with the package (``aitrados/data``)."""
    return Path(__file__).resolve().parent.parent / "data"


def bundled_bar_files() -> dict[tuple[str, str], Path]:
    """The bundled bar files keyed by ``(full_symbol, interval)``."""
    out: dict[tuple[str, str], Path] = {}
    for p in sorted((bundled_data_dir() / "bars").glob("*")):
        key = symbol_from_filename(p)
        if key:
            out[key] = p
    return out


# --------------------------------------------------------------------------- bars

_MDY = re.compile(r"^\s*(\d{1,2})/(\d{1,2})/(\d{4})\s*$")
_YMD = re.compile(r"^\s*(\d{4})-(\d{2})-(\d{2})\s*$")


def _parse_open(value: Any, iv: str, session: Session) -> dt.datetime:
    """Open time from a cell: ``M/D/YYYY`` or ``YYYY-MM-DD`` dates (calendar intervals only) or a timestamp."""
    if isinstance(value, str):
        m = _MDY.match(value) or _YMD.match(value)
        if m:
            a, b, c = (int(x) for x in m.groups())
            day = dt.date(c, a, b) if _MDY.match(value) else dt.date(a, b, c)
            if iv in INTERVAL_MINUTES:
                raise ValueError(f"date-only value {value!r} in a {iv} file; give a full timestamp")
            return bar_open(session.day_start(day), iv, session)
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return bar_open(session.day_start(value), iv, session)
    return parse_timestamp(value)


def _num(value: Any, name: str) -> float:
    if value is None or (isinstance(value, str) and value.strip() == ""):
        raise ValueError(f"empty {name}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} is not a number: {value!r}") from None
    if v != v or v in (float("inf"), float("-inf")):
        raise ValueError(f"{name} is not finite: {value!r}")
    return v


def _rows_csv(path: Path) -> tuple[list[str], Iterator[tuple[int, dict[str, Any]]]]:
    fh = path.open(newline="", encoding="utf-8-sig")
    reader = csv.DictReader(fh)
    header = list(reader.fieldnames or [])

    def gen() -> Iterator[tuple[int, dict[str, Any]]]:
        try:
            for row in reader:
                yield reader.line_num, row
        finally:
            fh.close()

    return header, gen()


def _rows_parquet(path: Path) -> tuple[list[str], Iterator[tuple[int, dict[str, Any]]]]:
    try:
        import pandas as pd

        df = pd.read_parquet(path)
    except ImportError as e:
        raise RuntimeError(
            f"{path}: reading Parquet needs pyarrow (pip install pyarrow) or fastparquet; or convert the file to CSV"
        ) from e
    header = [str(c) for c in df.columns]
    return header, ((i + 1, rec) for i, rec in enumerate(df.to_dict("records")))


def _resolve_mapping(header: list[str], mapping: Mapping[str, str] | None, fname: str) -> dict[str, str]:
    if mapping is None:
        mapping = YAHOO_COLUMNS if ("Date" in header and "Open" in header) else AITRADOS_COLUMNS
    cols = {k: v for k, v in mapping.items() if v in header}
    missing = [f"{k} (column {mapping.get(k, k)!r})" for k in _REQUIRED if k not in cols]
    if missing:
        raise _MissingColumns(f"{fname}: missing columns {', '.join(missing)}; header is {header}. "
                              "Pass a column mapping (see docs/marketdata.md, 'Loader').")
    return cols


class _MissingColumns(MarketDataError, ValueError):
    pass


def load_bars(
    path: str | Path,
    full_symbol: str | None = None,
    interval: str | None = None,
    *,
    mapping: Mapping[str, str] | None = None,
    session: Session | None = None,
    gap_days: int | None = None,
) -> LoadResult:
    """Load the bars of one symbol and interval from a CSV or Parquet file.

    :param full_symbol: the symbol; default from the file name (``STOCK_US_SPX_DAY.csv``) or from
        ``asset_schema``/``country_iso_code``/``symbol`` columns of the first row.
    :param interval: default from the file name or an ``interval`` column.
    :param mapping: ``{our field: file column}``; default picked from the header (module doc).
    :param session: for anchoring date-only rows and computing close times; default ``session_for``.
    :param gap_days: daily files: how many consecutive missing trading days are tolerated before a
        ``gap`` issue is reported; default 0 when the session has a holiday calendar (stocks), else 1
        (one unlisted holiday, e.g. an FX Christmas, is tolerated).
    :returns: a :class:`LoadResult` whose ``bars`` are the good rows, oldest first.
    :raises FileNotFoundError: when the file does not exist. A file without the required columns is
        reported as one ``missing_column`` issue and yields no bars.
    """
    p = Path(path)
    fname = str(p)
    if not p.is_file():
        raise FileNotFoundError(f"bar file not found: {fname}")
    res = LoadResult()
    header, rows = (_rows_parquet(p) if p.suffix.lower() in (".parquet", ".pq") else _rows_csv(p))
    try:
        cols = _resolve_mapping(header, mapping, fname)
    except _MissingColumns as e:
        res.issues.append(DataIssue(fname, 1, "missing_column", str(e)))
    else:
        from_name = symbol_from_filename(p)
        series = _Series(normalize_full_symbol(full_symbol) if full_symbol else (from_name[0] if from_name else None),
                         normalize_interval(interval) if interval else (from_name[1] if from_name else None),
                         session)
        _read_bars(rows, cols, series, gap_days, fname, res)
    _log(res.issues)
    return res


@dataclass
class _Series:
    """What one bar file holds: its symbol, interval and session, each known from the arguments or
    the file name, else taken from the first row that says it (and kept from then on)."""

    full_symbol: str | None
    interval: str | None
    session: Session | None

    def resolve(self, row: Mapping[str, Any]) -> None:
        """Fill what is still unknown from *row*; raises ``_Fatal`` when the file cannot say it,
        ``ValueError`` when this row says it badly."""
        if self.full_symbol is None:
            self.full_symbol = _symbol_from_row(row)
        if self.interval is None:
            if not row.get("interval"):
                raise _Fatal("no interval: name the file ASSET_COUNTRY_SYMBOL_INTERVAL.csv, "
                             "add an 'interval' column or pass interval=")
            self.interval = normalize_interval(str(row["interval"]))
        if self.session is None:
            self.session = session_for(self.full_symbol)


def _read_bars(rows: Iterator[tuple[int, dict[str, Any]]], cols: dict[str, str], series: _Series,
               gap_days: int | None, fname: str, res: LoadResult) -> None:
    """Append the good bars of *rows* to ``res.records`` and an issue per bad or suspicious row."""
    last: Bar | None = None
    seen: set[dt.datetime] = set()
    for line, row in rows:
        try:
            series.resolve(row)
        except _Fatal as e:
            res.issues.append(DataIssue(fname, line, "missing_column", str(e)))
            break
        except ValueError as e:
            res.issues.append(DataIssue(fname, line, "malformed", str(e)))
            continue
        assert series.full_symbol and series.interval and series.session is not None
        try:
            bar = _bar_from_row(row, cols, series.full_symbol, series.interval, series.session)
        except (ValueError, KeyError) as e:
            res.issues.append(DataIssue(fname, line, "malformed", str(e)))
            continue
        rejected = _rejection(bar, last, seen)
        if rejected:
            res.issues.append(DataIssue(fname, line, *rejected))
            continue
        if last is not None:
            allowed = gap_days if gap_days is not None else (0 if series.session.holidays else 1)
            gap = _gap(last, bar, series.interval, series.session, allowed)
            if gap:
                res.issues.append(DataIssue(fname, line, "gap", gap))
        seen.add(bar.datetime)
        res.records.append(bar)
        last = bar


def _bar_from_row(row: Mapping[str, Any], cols: dict[str, str], fs: str, iv: str, sess: Session) -> Bar:
    """The bar of one row (``ValueError``/``KeyError`` when a cell is missing or not a number)."""
    opened = _parse_open(row[cols["datetime"]], iv, sess)
    cd_col = cols.get("close_datetime")
    cd_raw = row.get(cd_col) if cd_col else None
    closes = parse_timestamp(cd_raw) if cd_raw not in (None, "") else bar_close(opened, iv, sess)
    o, h, l, c = (_num(row[cols[k]], k) for k in ("open", "high", "low", "close"))
    v = _optional_num(row, cols.get("volume"), "volume")
    w = _optional_num(row, cols.get("vwap"), "vwap")
    return Bar(fs, iv, opened, closes, o, h, l, c, 0.0 if v is None else v, w, True)


def _optional_num(row: Mapping[str, Any], col: str | None, name: str) -> float | None:
    """The number in column *col*, or None when there is no such column or the cell is empty."""
    return _num(row[col], name) if col and row.get(col) not in (None, "") else None


def _rejection(bar: Bar, last: Bar | None, seen: set[dt.datetime]) -> tuple[str, str] | None:
    """``(kind, message)`` when *bar* is not kept: inconsistent prices, a duplicate or out of order."""
    opened = bar.datetime
    probs = bar_problems(bar)
    if probs:
        return "inconsistent", f"bar at {opened.isoformat()}: " + "; ".join(probs)
    if opened in seen:
        return "duplicate", f"a bar opening at {opened.isoformat()} was already loaded; this row is skipped"
    if last is not None and opened < last.datetime:
        return "out_of_order", f"bar at {opened.isoformat()} comes after {last.datetime.isoformat()}; skipped"
    return None


class _Fatal(MarketDataError, ValueError):
    pass


def _symbol_from_row(row: Mapping[str, Any]) -> str:
    fs = row.get("full_symbol")
    if fs:
        return normalize_full_symbol(str(fs))
    a, c, s = row.get("asset_schema"), row.get("country_iso_code"), row.get("symbol")
    if a and c and s:
        return normalize_full_symbol(f"{a}:{c}:{s}")
    raise _Fatal("no symbol: name the file ASSET_COUNTRY_SYMBOL_INTERVAL.csv (e.g. STOCK_US_SPX_DAY.csv), "
                 "add asset_schema/country_iso_code/symbol columns or pass full_symbol=")


def _gap(prev: Bar, bar: Bar, iv: str, s: Session, gap_days: int) -> str | None:
    if bar.datetime == prev.close_datetime:
        return None
    if iv in INTERVAL_MINUTES:
        expect_close = next_bar_close(prev.close_datetime, iv, s)
        expect_open = bar_open(expect_close - dt.timedelta(microseconds=1), iv, s)
        if bar.datetime > expect_open:
            return f"bars missing between {prev.datetime.isoformat()} and {bar.datetime.isoformat()} (expected {expect_open.isoformat()})"
        return None
    if iv == "DAY":
        d0, d1 = s.day_of(prev.datetime), s.day_of(bar.datetime)
        missing = [d0 + dt.timedelta(days=k) for k in range(1, (d1 - d0).days)]
        missing = [d for d in missing if s.is_trading_day(d)]
        if len(missing) > gap_days:
            return f"{len(missing)} trading days missing between {d0} and {d1} ({missing[0]} .. {missing[-1]})"
        return None
    nxt = bar_open(prev.close_datetime + dt.timedelta(days=1), iv, s)
    if bar.datetime > nxt:
        return f"{iv} bars missing between {prev.datetime.date()} and {bar.datetime.date()}"
    return None


def _log(issues: list[DataIssue]) -> None:
    for i in issues[:_MAX_LOGGED]:
        (logger.info if i.kind == "gap" else logger.warning)("data issue {}", i)
    if len(issues) > _MAX_LOGGED:
        logger.warning("{} more data issues in {} (see the loader's issue list)", len(issues) - _MAX_LOGGED, issues[0].file)


# --------------------------------------------------------------------------- news and calendar


def _json_records(text: str, fname: str, res: LoadResult) -> Iterator[tuple[int, Any]]:
    """Records of a JSON array (with the line each starts on), JSON Lines, or an envelope
    ``{"data": [...]}`` / ``{"result": {"data": [...]}}`` (line = 1 for envelope records)."""
    stripped = text.lstrip()
    dec = json.JSONDecoder()
    if stripped.startswith("["):
        pos = text.index("[") + 1
        n = len(text)
        while True:
            while pos < n and text[pos] in " \t\r\n,":
                pos += 1
            if pos >= n:
                res.issues.append(DataIssue(fname, text.count("\n") + 1, "malformed", "JSON array is not closed with ']'"))
                return
            if text[pos] == "]":
                return
            line = text.count("\n", 0, pos) + 1
            try:
                obj, pos = dec.raw_decode(text, pos)
            except json.JSONDecodeError as e:
                res.issues.append(DataIssue(fname, e.lineno, "malformed", f"invalid JSON: {e.msg}; the rest of the file is skipped"))
                return
            yield line, obj
    elif stripped.startswith("{"):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, dict) and ("data" in obj or "result" in obj):
            data = obj.get("data", obj.get("result"))
            if isinstance(data, dict):
                data = data.get("data")
            if not isinstance(data, list):
                res.issues.append(DataIssue(fname, 1, "malformed", "expected a list under 'data'"))
                return
            for rec in data:
                yield 1, rec
            return
        for i, raw in enumerate(text.splitlines(), 1):  # JSON Lines
            if not raw.strip():
                continue
            try:
                yield i, json.loads(raw)
            except json.JSONDecodeError as e:
                res.issues.append(DataIssue(fname, i, "malformed", f"invalid JSON: {e.msg}"))
    elif stripped:
        res.issues.append(DataIssue(fname, 1, "malformed", "not JSON: expected an array, an object or JSON Lines"))


def _load_records(path: str | Path, build: Any, key: Any, when: Any, what: str) -> LoadResult:
    p = Path(path)
    fname = str(p)
    if not p.is_file():
        raise FileNotFoundError(f"{what} file not found: {fname}")
    res = LoadResult()
    if p.suffix.lower() == ".csv":
        _, rows = _rows_csv(p)
        items: Iterator[tuple[int, Any]] = rows
    else:
        items = _json_records(p.read_text(encoding="utf-8"), fname, res)
    seen: set[Any] = set()
    good: list[tuple[dt.datetime, int, Any]] = []
    for line, rec in items:
        if not isinstance(rec, Mapping):
            res.issues.append(DataIssue(fname, line, "malformed", f"{what} record is not an object: {rec!r:.60}"))
            continue
        try:
            item = build(rec)
        except ValueError as e:
            res.issues.append(DataIssue(fname, line, "malformed", str(e)))
            continue
        k = key(item)
        if k in seen:
            res.issues.append(DataIssue(fname, line, "duplicate", f"duplicate {what} {k!r}; the first is kept"))
            continue
        seen.add(k)
        good.append((when(item), line, item))
    good.sort(key=lambda x: (x[0], x[1]))  # files need not be sorted: served in time order
    res.records = [g[2] for g in good]
    _log(res.issues)
    return res


def load_news(path: str | Path) -> LoadResult:
    """Load news items (JSON array / JSON Lines / envelope, or CSV with the protocol's column names).

    :returns: a :class:`LoadResult` with :class:`NewsItem` records sorted by ``published_date``;
        malformed records and duplicates (same time, title and symbol) are reported and skipped.
    """
    return _load_records(path, news_from_record, lambda n: (n.published_date, n.title, n.full_symbol),
                         lambda n: n.published_date, "news")


def load_calendar(path: str | Path) -> LoadResult:
    """Load economic-calendar events (same formats as :func:`load_news`).

    :returns: a :class:`LoadResult` with :class:`CalendarEvent` records sorted by ``event_timestamp``;
        malformed records and duplicates (same country, code and time) are reported and skipped.
    """
    return _load_records(path, event_from_record, lambda e: (e.country_iso_code, e.event_code, e.event_timestamp),
                         lambda e: e.event_timestamp, "calendar event")
