"""The replay clock: simulated time that starts at a chosen instant and runs at a chosen speed.

Speeds: ``1.0`` is real time, ``N`` is N times faster, ``0`` is "as fast as possible": the
clock then only moves when the replay pump calls :meth:`ReplayClock.advance_to` after it has
delivered everything due before, so order is kept however fast it goes.
Also here: :class:`Timeline`, the pure merge of bars, news and events into time-ordered ticks.
No sockets, no asyncio tasks: the replay server drives both.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any


def as_utc(dt: datetime) -> datetime:
    """The same instant, timezone-aware in UTC (naive values are taken as UTC)."""
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


class ReplayClock:
    """Simulated UTC time for a replay.

    :param start: simulated time when the clock starts
    :param speed: 1 = real time, N = N× faster, 0 = as fast as possible (moved by ``advance_to``)
    :param monotonic: the real-time source (a parameter so tests can drive it)
    """

    def __init__(self, start: datetime, speed: float = 0.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        if speed < 0:
            raise ValueError(f"replay speed must be >= 0 (0 = as fast as possible), got {speed}")
        self.start = as_utc(start)
        self.speed = float(speed)
        self._mono = monotonic
        self._sim = self.start          # simulated time at the anchor
        self._anchor: float | None = None  # real time when last (re)started; None = stopped
        self._frozen_at: datetime | None = None

    @property
    def as_fast_as_possible(self) -> bool:
        """True when the clock only moves through :meth:`advance_to`."""
        return self.speed == 0.0

    @property
    def running(self) -> bool:
        """True between :meth:`begin` and :meth:`freeze`/:meth:`pause`."""
        return self._anchor is not None

    def begin(self) -> None:
        """Start (or resume) the clock; idempotent while running."""
        if self._anchor is None and self._frozen_at is None:
            self._anchor = self._mono()

    def pause(self) -> None:
        """Stop the clock where it is; :meth:`begin` resumes it."""
        if self._anchor is not None:
            self._sim = self.now()
            self._anchor = None

    def freeze(self, at: datetime | None = None) -> None:
        """Stop the clock for good (end of data), optionally at a given time."""
        self._sim = as_utc(at) if at is not None else self.now()
        self._anchor = None
        self._frozen_at = self._sim

    def now(self) -> datetime:
        """The current simulated UTC time."""
        if self._anchor is None or self.speed == 0.0:
            return self._sim
        return self._sim + timedelta(seconds=(self._mono() - self._anchor) * self.speed)

    def advance_to(self, t: datetime) -> None:
        """Move an as-fast-as-possible clock forward to ``t`` (never backwards).

        :raises RuntimeError: on a clock with a speed (it moves by itself)
        """
        if self.speed != 0.0:
            raise RuntimeError("advance_to is only for speed=0 (as fast as possible) clocks")
        t = as_utc(t)
        if t > self._sim:
            self._sim = t

    def seconds_until(self, t: datetime) -> float:
        """Real seconds to wait until simulated ``t`` (0 when due or when as fast as possible)."""
        if self.speed == 0.0:
            return 0.0
        return max(0.0, (as_utc(t) - self.now()).total_seconds() / self.speed)

    async def wait_until(self, t: datetime) -> None:
        """Sleep until simulated time ``t`` is reached; returns at once when as fast as possible.

        Re-checks after each sleep, so a pause is honoured.
        """
        while True:
            if self.speed == 0.0:
                self.advance_to(t)
                return
            if not self.running:
                await asyncio.sleep(0.05)
                continue
            delay = self.seconds_until(t)
            if delay <= 0:
                return
            await asyncio.sleep(min(delay, 0.5))


@dataclass(order=True)
class Tick:
    """Everything due at one simulated instant: ``kind`` is ``ohlc``, ``news`` or ``event``.

    Records are what the items carried: protocol JSON dicts, or :class:`~aitrados.marketdata.models.Bar` s
    (the replay server's ``ohlc`` ticks, encoded per session when pushed).
    """

    due: datetime
    order: int
    kind: str = field(compare=False)
    records: list[Any] = field(compare=False, default_factory=list)


class Timeline:
    """Time-ordered ticks built from (due time, kind, record) items; items can be added later.

    Items with the same due time and kind form one tick (one WebSocket push). At equal due
    times, bars come before news and news before events. A consumer walks it with
    :meth:`next_after`, so ticks added ahead of its position are still seen.
    """

    _ORDER = {"ohlc": 0, "news": 1, "event": 2}

    def __init__(self, items: Iterable[tuple[datetime, str, Any]] = ()) -> None:
        self._ticks: dict[tuple[datetime, int], Tick] = {}
        self._keys: list[tuple[datetime, int]] = []
        self.add(items)

    def add(self, items: Iterable[tuple[datetime, str, Any]]) -> int:
        """Add items; :returns: how many were added."""
        new: list[tuple[datetime, int]] = []
        n = 0
        for due, kind, rec in items:
            order = self._ORDER.get(kind)
            if order is None:
                raise ValueError(f"unknown timeline kind {kind!r} (ohlc, news or event)")
            key = (as_utc(due), order)
            tick = self._ticks.get(key)
            if tick is None:
                tick = self._ticks[key] = Tick(key[0], order, kind, [])
                new.append(key)
            tick.records.append(rec)
            n += 1
        if len(new) > 16:
            self._keys = sorted(self._keys + new)
        else:
            for k in new:
                bisect.insort(self._keys, k)
        return n

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def first(self) -> datetime | None:
        """Due time of the first tick, or None when empty."""
        return self._keys[0][0] if self._keys else None

    @property
    def last(self) -> datetime | None:
        """Due time of the last tick, or None when empty."""
        return self._keys[-1][0] if self._keys else None

    def next_after(self, tick: Tick | None) -> Tick | None:
        """The tick following ``tick`` (the first one for None), or None at the end."""
        i = 0 if tick is None else bisect.bisect_right(self._keys, (tick.due, tick.order))
        return self._ticks[self._keys[i]] if i < len(self._keys) else None

    def first_after(self, t: datetime) -> Tick | None:
        """The first tick due strictly after ``t``."""
        i = bisect.bisect_right(self._keys, (as_utc(t), 99))
        return self._ticks[self._keys[i]] if i < len(self._keys) else None

    def position(self, tick: Tick | None) -> int:
        """How many ticks come up to and including ``tick`` (0 for None)."""
        return 0 if tick is None else bisect.bisect_right(self._keys, (tick.due, tick.order))
