"""The chart flow manager: every rolling window of the middleware, fed by one stream (pure, no I/O).

``ChartFlow`` holds one :class:`~aitrados.marketdata.chart.ChartWindow` per (full_symbol,
interval) and routes each incoming bar to the windows that can use it: a window of the bar's
own interval, and every window of a coarser interval built from it (1M into 5M/60M/DAY...,
DAY into WEEK/MON). Routing tables are computed when windows are added or removed, never per
bar. Closed bars are also fed to the :class:`~aitrados.marketdata.align.Aligner`.

``feed`` returns what changed so the caller (the hub) can publish it: nothing here does I/O.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

from .align import Aligner, Snapshot
from .chart import Change, ChartWindow, can_aggregate
from .intervals import Session, normalize_interval, session_for
from .models import Bar, normalize_full_symbol

Key = tuple[str, str]
_NONE, _CLOSED = Change.NONE, Change.CLOSED


@dataclass(slots=True)
class Update:
    """One window change caused by one input bar.

    :ivar window: the window that changed
    :ivar change: ``UPDATED``, ``OPENED`` or ``CLOSED``
    :ivar closed: bars that closed with this change (oldest first; empty unless ``CLOSED``)
    """

    window: ChartWindow
    change: Change
    closed: tuple[Bar, ...] = ()


@dataclass(slots=True)
class FeedResult:
    """Everything one bar changed: window updates in window order, then aligned snapshots."""

    updates: list[Update] = field(default_factory=list)
    snapshots: list[Snapshot] = field(default_factory=list)


class ChartFlow:
    """All chart windows and the aligner of one middleware.

    :param default_size: window length N when ``add`` gets none
    :param sessions: optional per-symbol sessions (e.g. with known holidays); shared by windows and aligner
    :param lateness: how long the aligner waits for a late member before a partial snapshot
    """

    def __init__(self, default_size: int = 150, sessions: dict[str, Session] | None = None,
                 lateness: dt.timedelta = dt.timedelta(minutes=1)) -> None:
        self.default_size = default_size
        self.sessions = dict(sessions or {})
        self.windows: dict[Key, ChartWindow] = {}
        self.aligner = Aligner(lateness=lateness, sessions=self.sessions)
        self._routes: dict[Key, list[ChartWindow]] = {}
        self._aligned: set[Key] = set()
        #: full_symbol -> interval -> see sole_window (two lookups a bar, no key tuple); cleared with the routes
        self._sole: dict[str, dict[str, ChartWindow | None]] = {}

    # ------------------------------------------------------------------ windows
    def session(self, full_symbol: str) -> Session:
        """The session used for *full_symbol* (a configured one, else the asset's default)."""
        return self.sessions.get(full_symbol) or session_for(full_symbol)

    def key(self, full_symbol: str, interval: str) -> Key:
        """The normalised (full_symbol, interval) key; raises ValueError for bad input."""
        return normalize_full_symbol(full_symbol), normalize_interval(interval)

    def add(self, full_symbol: str, interval: str, size: int | None = None) -> tuple[ChartWindow, bool]:
        """The window of (full_symbol, interval), created if needed; returns (window, created)."""
        k = self.key(full_symbol, interval)
        w = self.windows.get(k)
        if w is not None:
            return w, False
        w = ChartWindow(k[0], k[1], size or self.default_size, session=self.session(k[0]))
        self.windows[k] = w
        self._routes.clear()
        self._sole.clear()
        return w, True

    def remove(self, full_symbol: str, interval: str) -> bool:
        """Drop a window; returns False if there was none."""
        k = self.key(full_symbol, interval)
        if self.windows.pop(k, None) is None:
            return False
        self._routes.clear()
        self._sole.clear()
        return True

    def get(self, full_symbol: str, interval: str) -> ChartWindow | None:
        """The window of (full_symbol, interval), or None."""
        return self.windows.get(self.key(full_symbol, interval))

    def symbols(self) -> list[str]:
        """Every symbol with at least one window, sorted."""
        return sorted({k[0] for k in self.windows})

    # ------------------------------------------------------------------ groups
    def add_group(self, name: str, members: dict[str, Iterable[str]], size: int | None = None,
                  start: dt.datetime | None = None) -> list[ChartWindow]:
        """Register an aligned group; creates the member windows it needs; returns the new windows."""
        created = []
        norm: dict[str, list[str]] = {}
        for fs, ivs in members.items():
            sym = normalize_full_symbol(fs)
            norm[sym] = [normalize_interval(i) for i in ivs]
            for iv in norm[sym]:
                w, new = self.add(sym, iv, size)
                if new:
                    created.append(w)
        self.aligner.add_group(name, norm, start=start)
        self._aligned = {m for g in self.aligner.groups().values() for fs, ivs in g.items() for m in ((fs, i) for i in ivs)}
        self._sole.clear()
        return created

    def remove_group(self, name: str) -> bool:
        """Forget a group (its windows stay; remove them separately)."""
        ok = self.aligner.remove_group(name)
        self._aligned = {m for g in self.aligner.groups().values() for fs, ivs in g.items() for m in ((fs, i) for i in ivs)}
        self._sole.clear()
        return ok

    # ------------------------------------------------------------------ feeding
    def _route(self, k: Key) -> list[ChartWindow]:
        fs, iv = k
        r = [w for (wfs, wiv), w in self.windows.items() if wfs == fs and (wiv == iv or can_aggregate(iv, wiv))]
        self._routes[k] = r
        return r

    def sole_window(self, bar: Bar) -> ChartWindow | None:
        """The window *bar* feeds when it feeds exactly one, and that one is in no aligned group: feeding
        *bar* is then ``window.update(bar)`` alone (what :meth:`feed` would do, without building its
        result). None otherwise (no window, several, or an aligned one: use :meth:`feed`)."""
        try:
            return self._sole[bar.full_symbol][bar.interval]
        except KeyError:
            k = (bar.full_symbol, bar.interval)
            windows = self._routes.get(k)
            if windows is None:
                windows = self._route(k)
            w = windows[0] if len(windows) == 1 else None
            if w is not None and (w.full_symbol, w.interval) in self._aligned:
                w = None
            self._sole.setdefault(k[0], {})[k[1]] = w
            return w

    def feed(self, bar: Bar) -> FeedResult:
        """Route *bar* to its windows (O(1) per window) and the closed bars to the aligner."""
        updates: list[Update] = []
        out = FeedResult(updates, [])
        k = (bar.full_symbol, bar.interval)
        windows = self._routes.get(k)
        if windows is None:
            windows = self._route(k)
        aligned = self._aligned
        for w in windows:
            ch = w.update(bar)
            if ch is _NONE:
                continue
            if ch is _CLOSED:
                closed = w.just_closed
                updates.append(Update(w, ch, closed))
                if aligned and (w.full_symbol, w.interval) in aligned:
                    for b in closed:
                        out.snapshots += self.aligner.feed(b, now=bar.close_datetime)
            else:
                updates.append(Update(w, ch))
        return out

    def tick(self, now: dt.datetime) -> FeedResult:
        """Advance time with no bar (end of data, a quiet market): close due live bars, time out groups."""
        out = FeedResult()
        for w in self.windows.values():
            if w.tick(now) is Change.CLOSED:
                out.updates.append(Update(w, Change.CLOSED, w.just_closed))
                if (w.full_symbol, w.interval) in self._aligned:
                    for b in w.just_closed:
                        out.snapshots += self.aligner.feed(b, now=now)
        out.snapshots += self.aligner.tick(now)
        return out
