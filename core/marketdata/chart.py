"""Rolling chart windows: the last N bars of one (full_symbol, interval), updated in O(1) (pure, no I/O).

A :class:`ChartWindow` holds up to ``size - 1`` closed bars in a ring (a preallocated Python list of
:class:`~aitrados.marketdata.models.Bar` references: measured faster than writing six fields into
numpy arrays per bar, see bench/bench_chart.py) plus one live bar. It is fed either bars of its own
interval (a live stream: repeated updates of the forming bar, then the closed one) or bars of a finer
interval (usually 1-minute bars), which it aggregates: open = first, high = max, low = min,
close = last, volume = sum, vwap = volume-weighted vwap when every input has one. Buckets come from
:func:`~aitrados.marketdata.intervals.bar_open`/``bar_close`` with the window's session, so the
result equals ``pandas.resample`` of the same data for every non-empty bucket (tested against pandas).

A pandas DataFrame or numpy arrays are built only when asked (:meth:`ChartWindow.to_frame`,
:meth:`ChartWindow.arrays`).
"""

import datetime as dt
from collections.abc import Iterable
from enum import IntEnum

import msgspec
from typing import TYPE_CHECKING

import numpy as np
from loguru import logger

from .intervals import (
    INTERVAL_MINUTES,
    Session,
    bar_close,
    bar_open,
    grid_end,
    interval_rank,
    normalize_interval,
    session_for,
)
from .models import Bar, normalize_full_symbol

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Change", "ChartWindow", "can_aggregate", "resample_bars"]

_replace = msgspec.structs.replace
_MIN_DT = dt.datetime.min.replace(tzinfo=dt.timezone.utc)


class Change(IntEnum):
    """What one :meth:`ChartWindow.update` did. Compare with ``is`` or as ints (no flag arithmetic).

    * ``NONE``: nothing changed (a stale or duplicate input bar; counted in ``stale``).
    * ``UPDATED``: the live bar changed in place (publish ``ohlc.``/``chart.``).
    * ``OPENED``: a new live bar opened and nothing closed.
    * ``CLOSED``: one or more bars closed (they are in ``just_closed``, oldest first); a new live
      bar may have opened too.
    """

    NONE = 0
    UPDATED = 1
    OPENED = 2
    CLOSED = 3


_NONE, _UPDATED, _OPENED, _CLOSED = Change.NONE, Change.UPDATED, Change.OPENED, Change.CLOSED


def can_aggregate(source: str, target: str) -> bool:
    """True when bars of ``source`` interval can be aggregated into ``target`` bars.

    Minute intervals aggregate into a multiple of themselves and into DAY/WEEK/MON; DAY aggregates
    into WEEK and MON. WEEK does not aggregate into MON (weeks straddle months).
    """
    src, dst = normalize_interval(source), normalize_interval(target)
    if interval_rank(src) >= interval_rank(dst):
        return False
    if src in INTERVAL_MINUTES:
        return dst not in INTERVAL_MINUTES or INTERVAL_MINUTES[dst] % INTERVAL_MINUTES[src] == 0
    return src == "DAY"


class ChartWindow:
    """The last ``size`` bars (``size - 1`` closed plus the live one) of one symbol and interval.

    :param full_symbol: ``ASSET:COUNTRY:SYMBOL``.
    :param interval: one of :data:`~aitrados.marketdata.intervals.INTERVALS`.
    :param size: window length N (>= 2).
    :param session: bucket anchoring; default ``session_for(full_symbol)``.

    Attributes: ``seq`` (incremented on every change), ``just_closed`` (bars closed by the last
    update that returned ``CLOSED``), ``stale`` (count of ignored late/duplicate inputs).
    """

    __slots__ = (
        "full_symbol", "interval", "size", "session", "seq", "just_closed", "stale",
        "_ring", "_cap", "_head", "_count", "_live", "_floor",
        "_b_open", "_b_close", "_o", "_h", "_l", "_c", "_v", "_pv", "_vw_ok", "_pend", "_src_ok",
        "_step", "_grid_end",
    )

    def __init__(self, full_symbol: str, interval: str, size: int = 500, session: Session | None = None) -> None:
        if not isinstance(size, int) or size < 2:
            raise ValueError(f"chart window size must be an integer >= 2 (N-1 closed bars + the live bar), got {size!r}")
        self.full_symbol = normalize_full_symbol(full_symbol)
        self.interval = normalize_interval(interval)
        self.size = size
        self.session = session or session_for(self.full_symbol)
        self.seq = 0
        self.just_closed: tuple[Bar, ...] = ()
        self.stale = 0
        self._cap = size - 1
        self._ring: list[Bar | None] = [None] * self._cap
        self._head = 0
        self._count = 0
        self._src_ok: set[str] = {self.interval}
        n = INTERVAL_MINUTES.get(self.interval)
        self._step = dt.timedelta(minutes=n) if n else None
        self._reset_live(_MIN_DT)

    # ------------------------------------------------------------------ state helpers

    def _reset_live(self, floor: dt.datetime) -> None:
        self._live: Bar | None = None  # same-interval live bar
        self._floor = floor  # inputs opening before this are stale
        self._b_open: dt.datetime | None = None  # aggregation bucket
        self._b_close: dt.datetime | None = None
        self._o = self._h = self._l = self._c = self._v = self._pv = 0.0
        self._vw_ok = True
        self._pend: Bar | None = None  # unclosed sub-bar not yet folded
        self._grid_end = None

    def _append(self, bar: Bar) -> None:
        h = self._head
        self._ring[h] = bar
        h += 1
        self._head = 0 if h == self._cap else h
        if self._count < self._cap:
            self._count += 1

    # ------------------------------------------------------------------ feeding

    def update(self, bar: Bar) -> Change:
        """Feed one bar of this window's interval or a finer one; O(1).

        :returns: a :class:`Change`; on ``CLOSED`` the closed bars are in ``just_closed``.
        :raises ValueError: for a bar of another symbol or an interval that cannot be aggregated here.
        """
        if bar.full_symbol != self.full_symbol:
            raise ValueError(f"chart {self.full_symbol} {self.interval}: got a bar of {bar.full_symbol}")
        iv = bar.interval
        if iv == self.interval:
            return self._update_same(bar)
        if iv not in self._src_ok:
            if not can_aggregate(iv, self.interval):
                raise ValueError(
                    f"chart {self.full_symbol} {self.interval}: cannot build {self.interval} bars from {iv} bars; "
                    "feed 1M bars (or DAY bars for WEEK/MON)"
                )
            self._src_ok.add(iv)
        return self._update_agg(bar)

    def _update_same(self, bar: Bar) -> Change:
        t = bar.datetime
        live = self._live
        if live is not None:
            lt = live.datetime
            if t == lt:
                self.seq += 1
                if bar.closed:
                    self._append(bar)
                    self._live = None
                    self._floor = bar.close_datetime
                    self.just_closed = (bar,)
                    return _CLOSED
                self._live = bar
                return _UPDATED
            if t < lt:
                self.stale += 1
                return _NONE
            done = _replace(live, closed=True)
            self._append(done)
            self.seq += 1
            if bar.closed:
                self._append(bar)
                self._live = None
                self._floor = bar.close_datetime
                self.just_closed = (done, bar)
            else:
                self._live = bar
                self._floor = done.close_datetime
                self.just_closed = (done,)
            return _CLOSED
        if t < self._floor:
            self.stale += 1
            return _NONE
        self.seq += 1
        if bar.closed:
            self._append(bar)
            self._floor = bar.close_datetime
            self.just_closed = (bar,)
            return _CLOSED
        self._live = bar
        return _OPENED

    def _fold(self, bar: Bar) -> None:
        """Fold a finished sub-bar into the bucket aggregate."""
        self._pend = None
        if self._floor <= self._b_open:  # type: ignore[operator]  # first sub-bar of the bucket
            self._o, self._h, self._l = bar.open, bar.high, bar.low
            self._v = 0.0
            self._pv = 0.0
            self._vw_ok = True
        else:
            if bar.high > self._h:
                self._h = bar.high
            if bar.low < self._l:
                self._l = bar.low
        self._c = bar.close
        v = bar.volume
        self._v += v
        if bar.vwap is None:
            self._vw_ok = False
        else:
            self._pv += bar.vwap * v
        self._floor = bar.close_datetime

    def _finalize(self) -> Bar:
        v = self._v
        vwap = self._pv / v if (self._vw_ok and v > 0) else None
        out = Bar(self.full_symbol, self.interval, self._b_open, self._b_close,  # type: ignore[arg-type]
                  self._o, self._h, self._l, self._c, v, vwap, True)
        self._append(out)
        self._floor = self._b_close  # type: ignore[assignment]
        self._b_open = self._b_close = None
        self._pend = None
        return out

    def _update_agg(self, bar: Bar) -> Change:
        t = bar.datetime
        pend = self._pend
        if t < self._floor or (pend is not None and t < pend.datetime):
            self.stale += 1
            return _NONE
        bc = self._b_close
        if bc is not None and t < bc:
            # same bucket
            self.seq += 1
            if pend is not None and pend.datetime != t:
                self._fold(pend)  # an earlier sub-bar never got its closed update
            if not bar.closed:
                self._pend = bar
                return _UPDATED
            self._fold(bar)
            if bar.close_datetime >= bc:
                self.just_closed = (self._finalize(),)
                return _CLOSED
            return _UPDATED
        # a new bucket
        self.seq += 1
        closed: tuple[Bar, ...] = ()
        if bc is not None:
            if self._pend is not None:
                self._fold(self._pend)
            if self._floor > self._b_open:  # type: ignore[operator]
                closed = (self._finalize(),)
        ge = self._grid_end
        if ge is not None and t < ge and t == (bc if bc is not None else self._floor):
            # contiguous with the previous bucket inside one session run: no calendar arithmetic
            c = t + self._step  # type: ignore[operator]
            o, self._b_close = t, (c if c <= ge else ge)
            self._b_open = o
        else:
            o = bar_open(t, self.interval, self.session)
            self._b_open, self._b_close = o, bar_close(o, self.interval, self.session)
            self._grid_end = grid_end(o, self.interval, self.session)
        self._floor = o
        if bar.closed:
            self._fold(bar)
            if bar.close_datetime >= self._b_close:
                closed = closed + (self._finalize(),)
        else:
            self._pend = bar
        if closed:
            self.just_closed = closed
            return _CLOSED
        return _OPENED

    def tick(self, now: dt.datetime) -> Change:
        """Close the live bar if ``now`` is at or after its close time (end of data, quiet market).

        :returns: ``CLOSED`` (bar in ``just_closed``) or ``NONE``.
        """
        live = self._live
        if live is not None and now >= live.close_datetime:
            done = _replace(live, closed=True)
            self._append(done)
            self._live = None
            self._floor = done.close_datetime
            self.seq += 1
            self.just_closed = (done,)
            return _CLOSED
        if self._b_close is not None and now >= self._b_close:
            if self._pend is not None:
                self._fold(self._pend)
            if self._floor > self._b_open:  # type: ignore[operator]
                self.seq += 1
                self.just_closed = (self._finalize(),)
                return _CLOSED
            self._b_open = self._b_close = None
        return _NONE

    def hydrate(self, closed_bars: Iterable[Bar]) -> int:
        """Replace the window's contents with the most recent ``size - 1`` of ``closed_bars``.

        Bars are sorted by open time; duplicates keep the last given; live bars are ignored.

        :returns: how many bars the window now holds.
        :raises ValueError: for a bar of another symbol or interval.
        """
        by_time: dict[dt.datetime, Bar] = {}
        for b in closed_bars:
            if b.full_symbol != self.full_symbol or b.interval != self.interval:
                raise ValueError(
                    f"chart {self.full_symbol} {self.interval}: cannot hydrate with a {b.full_symbol} {b.interval} bar"
                )
            if b.closed:
                by_time[b.datetime] = b
        bars = [by_time[k] for k in sorted(by_time)][-self._cap:]
        self._ring = [None] * self._cap
        self._head = 0
        self._count = 0
        for b in bars:
            self._append(b)
        self._reset_live(bars[-1].close_datetime if bars else _MIN_DT)
        self.seq += 1
        self.just_closed = ()
        return len(bars)

    # ------------------------------------------------------------------ reading

    def closed_bars(self) -> list[Bar]:
        """The closed bars, oldest first (at most ``size - 1``)."""
        if self._count < self._cap:
            return self._ring[: self._count]  # type: ignore[return-value]
        h = self._head
        return self._ring[h:] + self._ring[:h]  # type: ignore[operator]

    def live_bar(self) -> Bar | None:
        """The forming bar (``closed=False``), or None when no bar is forming."""
        if self._live is not None:
            return self._live
        if self._b_open is None:
            return None
        pend = self._pend
        if self._floor <= self._b_open:  # nothing folded yet
            if pend is None:
                return None
            o, h, l, c, v = pend.open, pend.high, pend.low, pend.close, pend.volume
            pv, ok = (pend.vwap or 0.0) * v, pend.vwap is not None
        else:
            o, h, l, c, v, pv, ok = self._o, self._h, self._l, self._c, self._v, self._pv, self._vw_ok
            if pend is not None:
                h, l, c, v = max(h, pend.high), min(l, pend.low), pend.close, v + pend.volume
                ok = ok and pend.vwap is not None
                pv += (pend.vwap or 0.0) * pend.volume
        return Bar(self.full_symbol, self.interval, self._b_open, self._b_close,  # type: ignore[arg-type]
                   o, h, l, c, v, (pv / v if ok and v > 0 else None), False)

    def bars(self) -> list[Bar]:
        """Closed bars then the live bar (if any): the whole window, oldest first."""
        out = self.closed_bars()
        live = self.live_bar()
        return out + [live] if live is not None else list(out)

    def last(self) -> Bar | None:
        """The live bar, else the most recent closed bar, else None."""
        live = self.live_bar()
        if live is not None:
            return live
        return self._ring[self._head - 1] if self._count else None

    @property
    def closed_count(self) -> int:
        """How many closed bars the window holds (O(1))."""
        return self._count

    def __len__(self) -> int:
        return self._count + (1 if self.live_bar() is not None else 0)

    def arrays(self) -> dict[str, np.ndarray]:
        """The window as numpy arrays (built on demand): ``time`` (int64 epoch seconds of the open),
        ``open``, ``high``, ``low``, ``close``, ``volume`` (float64), oldest first, live bar last."""
        bars = self.bars()
        n = len(bars)
        out = {"time": np.empty(n, np.int64)}
        for k in ("open", "high", "low", "close", "volume"):
            out[k] = np.empty(n, np.float64)
        for i, b in enumerate(bars):
            out["time"][i] = int(b.datetime.timestamp())
            out["open"][i], out["high"][i], out["low"][i], out["close"][i], out["volume"][i] = (
                b.open, b.high, b.low, b.close, b.volume)
        return out

    def to_frame(self) -> "pd.DataFrame":
        """The window as a DataFrame indexed by open time (UTC), columns close_datetime, open, high,
        low, close, volume, vwap, closed. Built on demand; O(N)."""
        import pandas as pd  # lazily: importing pandas costs ~0.5 s and only this needs it

        bars = self.bars()
        df = pd.DataFrame(
            {
                "close_datetime": pd.to_datetime([b.close_datetime for b in bars], utc=True),
                "open": [b.open for b in bars],
                "high": [b.high for b in bars],
                "low": [b.low for b in bars],
                "close": [b.close for b in bars],
                "volume": [b.volume for b in bars],
                "vwap": [np.nan if b.vwap is None else b.vwap for b in bars],
                "closed": [b.closed for b in bars],
            },
            index=pd.DatetimeIndex(pd.to_datetime([b.datetime for b in bars], utc=True), name="datetime"),
        )
        return df

    def __repr__(self) -> str:
        return f"ChartWindow({self.full_symbol!r}, {self.interval!r}, size={self.size}, bars={len(self)}, seq={self.seq})"


def resample_bars(
    bars: Iterable[Bar],
    interval: str,
    session: Session | None = None,
    *,
    include_partial: bool = True,
) -> list[Bar]:
    """Aggregate finer bars (oldest first, one symbol) into ``interval`` bars with the chart's logic.

    :param include_partial: also return the last bucket if it is still forming (``closed=False``).
    :returns: the aggregated bars, oldest first. Stale/duplicate inputs are skipped (and logged).
    """
    it = iter(bars)
    first = next(it, None)
    if first is None:
        return []
    win = ChartWindow(first.full_symbol, interval, size=2, session=session)
    out: list[Bar] = []
    for b in _chain(first, it):
        if win.update(b) is _CLOSED:
            out.extend(win.just_closed)
    if win.stale:
        logger.warning("resample {} to {}: skipped {} stale or duplicate bars", win.full_symbol, win.interval, win.stale)
    if include_partial:
        live = win.live_bar()
        if live is not None:
            out.append(live)
    return out


def _chain(first: Bar, rest: Iterable[Bar]) -> Iterable[Bar]:
    yield first
    yield from rest
