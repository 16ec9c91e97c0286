"""Multi-symbol, multi-timeframe alignment of closed bars into one snapshot per time frontier (pure, no I/O).

Definitions (also in docs/marketdata.md, "Alignment"):

* A **group** is a name and a set of **members** ``(full_symbol, interval)``. Each member has a
  **schedule**: the close times of its bars, from its interval and its symbol's
  :class:`~aitrados.marketdata.intervals.Session` (trading weekdays, hours and known holidays).
  A member is **due** at time F when F is on its schedule.
* The group's **frontiers** are the union of its members' schedules, in increasing order.
* The **snapshot** for frontier F holds, for every member that has one, its latest closed bar with
  ``close_datetime <= F`` (a 15M bar is shown only once it closed; a 1M member is never ahead of a
  DAY member or behind it: all are "as of F"). ``updated`` names the members whose bar closed at F.
* It is emitted **complete** once every member due at F has delivered its bar closing at F, or
  **partial** (``partial=True``, ``missing`` = the due members without their bar) once
  ``now >= F + lateness`` and at least one due member has delivered. A frontier where no member
  delivered by then is **skipped** (counted in ``skipped``): nothing happened there.
* Snapshots of a group are emitted in strictly increasing frontier order, **never twice for one
  frontier**; a later frontier waits behind an earlier incomplete one. Bars closing at or before an
  emitted frontier that arrive later are **late**: counted, and used only as the carried bar of later
  snapshots. Live (``closed=False``) bars are ignored.

Holidays: a member whose session says the market is closed (weekend, outside hours, a holiday in
``Session.holidays``) is not due, so it is not waited for; it keeps showing its last closed bar and
is absent from ``updated``. The default sessions (``session_for``) carry the exchange calendar for
stocks (holidays, 13:00 early closes), the 24/5 FX week (Sunday to Friday 17:00 New York) and 24/7
crypto. A closure the calendar does not know makes the member late: after the lateness timeout the
snapshot is emitted partial, naming it in ``missing``.

Start: pass ``start`` to :meth:`Aligner.add_group` to fix the first frontier (the first scheduled
close after ``start``). Without it, the first frontier is the earliest bar close seen before the
first emission.
"""

import bisect
import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from loguru import logger

from .intervals import (
    INTERVAL_MINUTES,
    Session,
    bar_open,
    grid_end,
    interval_rank,
    next_bar_close,
    normalize_interval,
    session_for,
)
from .models import Bar, bar_to_record, format_timestamp, normalize_full_symbol

__all__ = ["Member", "Snapshot", "Aligner", "expected_schedule"]

Member = tuple[str, str]
_EPS = dt.timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One aligned view of a group at a time frontier.

    :ivar group: the group name.
    :ivar frontier: the frontier F (UTC).
    :ivar bars: ``{(full_symbol, interval): Bar}``, each the member's latest closed bar with close <= F.
    :ivar updated: members whose bar closed exactly at F.
    :ivar partial: True when emitted by the lateness timeout with some due members missing.
    :ivar missing: due members whose bar for F had not arrived (sorted).
    """

    group: str
    frontier: dt.datetime
    bars: dict[Member, Bar]
    updated: tuple[Member, ...]
    partial: bool = False
    missing: tuple[Member, ...] = ()

    def get(self, full_symbol: str, interval: str) -> Bar | None:
        """The bar of one member, or None."""
        return self.bars.get((full_symbol, interval))

    def to_record(self) -> dict[str, Any]:
        """A JSON/msgpack-friendly dict: bars nested as ``{full_symbol: {interval: bar record}}``."""
        nested: dict[str, dict[str, Any]] = {}
        for (fs, iv), b in self.bars.items():
            nested.setdefault(fs, {})[iv] = bar_to_record(b)
        return {
            "group": self.group,
            "frontier": format_timestamp(self.frontier),
            "partial": self.partial,
            "missing": [list(m) for m in self.missing],
            "updated": [list(m) for m in self.updated],
            "bars": nested,
        }


class _Clock:
    """A member's bar-close schedule, with a cached fast path inside one session day."""

    __slots__ = ("interval", "session", "step", "_day_end", "_last")

    def __init__(self, interval: str, session: Session) -> None:
        self.interval = interval
        self.session = session
        n = INTERVAL_MINUTES.get(interval)
        self.step = dt.timedelta(minutes=n) if n else None
        self._day_end: dt.datetime | None = None  # close of the session day of the last computed bar
        self._last: dt.datetime | None = None  # the last close returned

    def next_close(self, after: dt.datetime) -> dt.datetime:
        """First scheduled close strictly after ``after``."""
        step, end = self.step, self._day_end
        if step is not None and end is not None and after == self._last and after < end:
            # ``after`` is our previous close, inside its session day: the next bar opens there
            c = after + step
            if c > end:
                c = end
            self._last = c
            return c
        c = next_bar_close(after, self.interval, self.session)
        self._last = c
        if step is not None:
            self._day_end = grid_end(bar_open(c - _EPS, self.interval, self.session), self.interval, self.session)
        return c


@dataclass(slots=True)
class _MemberState:
    clock: _Clock
    due_at: dt.datetime | None = None  # next scheduled close
    buf: dict[dt.datetime, Bar] = field(default_factory=dict)  # received bars not yet shown, by close
    closes: list[dt.datetime] = field(default_factory=list)  # sorted keys of buf
    current: Bar | None = None  # latest bar with close <= last emitted frontier


@dataclass(slots=True)
class _Group:
    name: str
    members: dict[Member, _MemberState]
    start: dt.datetime | None
    start_fixed: bool
    last: dt.datetime | None = None  # last emitted (or skipped) frontier
    frontier: dt.datetime | None = None
    due: tuple[Member, ...] = ()
    have: set[Member] = field(default_factory=set)
    emitted: int = 0
    partials: int = 0
    skipped: int = 0
    late: int = 0


class Aligner:
    """Aligns closed bars of named groups into :class:`Snapshot` s, one per frontier (module doc).

    :param lateness: how long after a frontier to wait for missing members before emitting partial.
    :param sessions: per-symbol sessions (with holidays); default ``session_for(full_symbol)``.
    """

    def __init__(self, lateness: dt.timedelta = dt.timedelta(seconds=60),
                 sessions: Mapping[str, Session] | None = None) -> None:
        if lateness < dt.timedelta(0):
            raise ValueError(f"lateness must be >= 0, got {lateness}")
        self.lateness = lateness
        self._sessions = {normalize_full_symbol(k): v for k, v in (sessions or {}).items()}
        self._groups: dict[str, _Group] = {}
        self._index: dict[Member, list[_Group]] = {}

    # ------------------------------------------------------------------ groups

    def session(self, full_symbol: str) -> Session:
        """The session used for a symbol."""
        return self._sessions.get(full_symbol) or session_for(full_symbol)

    def add_group(self, name: str, members: Mapping[str, Iterable[str]], *, start: dt.datetime | None = None,
                  replace: bool = False) -> None:
        """Add (or with ``replace=True`` replace) a group ``{full_symbol: [intervals]}``.

        :param start: frontiers are the scheduled closes after this instant; default: inferred.
        :raises ValueError: for an empty group, a bad symbol or interval, or an existing name.
        """
        if not isinstance(name, str) or not name.strip():
            raise ValueError("group name must be a non-empty string")
        if name in self._groups and not replace:
            raise ValueError(f"group {name!r} already exists; remove it first or pass replace=True")
        mem: dict[Member, _MemberState] = {}
        for fs_raw, ivs in members.items():
            fs = normalize_full_symbol(fs_raw)
            if isinstance(ivs, str):
                ivs = [ivs]
            for iv_raw in ivs:
                iv = normalize_interval(iv_raw)
                mem[(fs, iv)] = _MemberState(_Clock(iv, self.session(fs)))
        if not mem:
            raise ValueError(f"group {name!r} has no members; give {{full_symbol: [intervals]}}")
        if name in self._groups:
            self.remove_group(name)
        ordered = dict(sorted(mem.items(), key=lambda kv: (kv[0][0], interval_rank(kv[0][1]))))
        g = _Group(name, ordered, start.astimezone(dt.timezone.utc) if start else None, start is not None)
        self._groups[name] = g
        for m in ordered:
            self._index.setdefault(m, []).append(g)
        if g.start is not None:
            self._reschedule(g, g.start)

    def remove_group(self, name: str) -> bool:
        """Remove a group; returns False when there was none of that name."""
        g = self._groups.pop(name, None)
        if g is None:
            return False
        for m in g.members:
            lst = self._index.get(m, [])
            if g in lst:
                lst.remove(g)
            if not lst:
                self._index.pop(m, None)
        return True

    def groups(self) -> dict[str, dict[str, list[str]]]:
        """Every group as ``{name: {full_symbol: [intervals]}}``."""
        out: dict[str, dict[str, list[str]]] = {}
        for name, g in self._groups.items():
            d: dict[str, list[str]] = {}
            for fs, iv in g.members:
                d.setdefault(fs, []).append(iv)
            out[name] = d
        return out

    def stats(self, name: str) -> dict[str, Any]:
        """Counters of a group: emitted, partials, skipped, late, and the pending frontier."""
        g = self._groups[name]
        return {"emitted": g.emitted, "partials": g.partials, "skipped": g.skipped, "late": g.late,
                "frontier": g.frontier, "waiting_for": sorted(set(g.due) - g.have)}

    # ------------------------------------------------------------------ feeding

    def feed(self, bar: Bar, now: dt.datetime | None = None) -> list[Snapshot]:
        """Feed one closed bar (any order, any delay); ``now`` (optional) also applies the lateness rule.

        :returns: the snapshots this made ready, in frontier order per group.
        """
        if not bar.closed:
            return []
        groups = self._index.get((bar.full_symbol, bar.interval))
        if not groups:
            return []
        m = (bar.full_symbol, bar.interval)
        c = bar.close_datetime
        out: list[Snapshot] = []
        for g in groups:
            st = g.members[m]
            if g.last is not None and c <= g.last:
                g.late += 1
                if st.current is None or c > st.current.close_datetime:
                    st.current = bar
                continue
            if c not in st.buf:
                if not st.closes or c > st.closes[-1]:
                    st.closes.append(c)
                else:
                    bisect.insort(st.closes, c)
            st.buf[c] = bar
            if not g.start_fixed and (g.start is None or c - _EPS < g.start):
                self._reschedule(g, c - _EPS)
            elif c == g.frontier and st.due_at == c:
                g.have.add(m)
            if len(g.have) == len(g.due) or now is not None:
                self._drain(g, now, out)
        return out

    def tick(self, now: dt.datetime) -> list[Snapshot]:
        """Apply the lateness timeout at time ``now``: emit what became due (partial or skipped).

        :returns: the snapshots emitted, in frontier order per group.
        """
        out: list[Snapshot] = []
        for g in self._groups.values():
            self._drain(g, now, out)
        return out

    # ------------------------------------------------------------------ internals

    def _reschedule(self, g: _Group, base: dt.datetime) -> None:
        g.start = base
        for st in g.members.values():
            st.due_at = st.clock.next_close(base)
        self._set_frontier(g)

    def _set_frontier(self, g: _Group) -> None:
        f = min(st.due_at for st in g.members.values())  # type: ignore[type-var]
        g.frontier = f
        g.due = tuple(m for m, st in g.members.items() if st.due_at == f)
        g.have = {m for m in g.due if f in g.members[m].buf}

    def _drain(self, g: _Group, now: dt.datetime | None, out: list[Snapshot]) -> None:
        for _ in range(1_000_000):
            f = g.frontier
            if f is None:
                return
            complete = len(g.have) == len(g.due)
            if not complete:
                if now is None or now < f + self.lateness:
                    return
                if not g.have:
                    self._skip(g, f, now)
                    continue
            out.append(self._emit(g, f, complete))
        logger.error("aligner group {}: drain loop bound reached", g.name)

    def _emit(self, g: _Group, f: dt.datetime, complete: bool) -> Snapshot:
        bars: dict[Member, Bar] = {}
        for m, st in g.members.items():
            closes = st.closes
            if closes and closes[0] <= f:
                k = bisect.bisect_right(closes, f)
                newest = st.buf[closes[k - 1]]
                for c in closes[:k]:
                    del st.buf[c]
                del closes[:k]
                if st.current is None or newest.close_datetime > st.current.close_datetime:
                    st.current = newest
            if st.current is not None:
                bars[m] = st.current
        missing = () if complete else tuple(m for m in g.due if m not in g.have)
        snap = Snapshot(g.name, f, bars, tuple(m for m in g.due if m in g.have), not complete, missing)
        if not complete:
            g.partials += 1
            logger.debug("aligner group {}: partial snapshot at {}, missing {}", g.name, f, missing)
        g.emitted += 1
        self._advance(g, f)
        return snap

    def _skip(self, g: _Group, f: dt.datetime, now: dt.datetime) -> None:
        """Nothing arrived for frontier f by its deadline: jump to the next frontier that can still
        be emitted (the earliest buffered bar, or the first one whose deadline has not passed)."""
        g.skipped += 1
        earliest = min((st.closes[0] for st in g.members.values() if st.closes), default=None)
        base = now - self.lateness
        if earliest is not None and earliest - _EPS < base:
            base = earliest - _EPS
        if base <= f:
            self._advance(g, f)
            return
        g.last = base  # bars closing up to here are late from now on
        g.start_fixed = True
        for st in g.members.values():
            st.due_at = st.clock.next_close(base)
        self._set_frontier(g)

    def _advance(self, g: _Group, f: dt.datetime) -> None:
        g.last = f
        g.start_fixed = True
        for m in g.due:
            st = g.members[m]
            st.due_at = st.clock.next_close(f)
        self._set_frontier(g)


def expected_schedule(interval: str, session: Session, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    """Every scheduled close of ``interval`` in ``(start, end]`` (helper for tests and tools)."""
    out: list[dt.datetime] = []
    t = start
    while True:
        t = next_bar_close(t, interval, session)
        if t > end:
            return out
        out.append(t)

