"""Macroeconomic surprises and stand-aside windows from economic-calendar events, as signals.

:class:`MacroSurprise` is pure logic: feed it calendar events in arrival order.

- A **release** (``actual_value`` and ``forecast_value`` both known) gives a ``surprise`` signal:
  ``actual - forecast``, normalised by the standard deviation (ddof=1) of that event code's
  earlier surprises in the same country once there are ``min_history`` of them with a non-zero
  spread (``data.normalised`` true, ``value`` = the z-score); before that, by ``|forecast|``
  (``data.normalised`` false, low confidence). ``score`` is ``z / 3`` clipped to [-1, 1],
  negated for codes where a higher number is bad news (``inverse_codes``, e.g. unemployment).
- A **preview** of an event at or above ``stand_aside_impact`` (outcome not known yet) gives a
  ``stand_aside`` signal whose ``data`` holds the window ``[event - before, event + after]`` —
  the same window the strategies' own stand-aside uses.

A country's signals are published for each configured symbol of that country
(``symbols_by_country``), or for ``*`` when none is configured.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from typing import Any

from .record import Signal

MODULE = "macro"
IMPACT_RANK = {"low": 1, "medium": 2, "high": 3}
#: Codes whose higher value is bad for risk assets by default.
INVERSE_CODES = frozenset({"UNEMPLOYMENT_RATE", "INITIAL_JOBLESS_CLAIMS", "CONTINUING_JOBLESS_CLAIMS"})


class _Running:
    """Count, mean and sum of squared deviations of one code's surprises (Welford)."""

    __slots__ = ("n", "mean", "m2")

    def __init__(self) -> None:
        self.n, self.mean, self.m2 = 0, 0.0, 0.0

    def std(self) -> float:
        return math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else 0.0

    def add(self, x: float) -> None:
        self.n += 1
        d = x - self.mean
        self.mean += d / self.n
        self.m2 += d * (x - self.mean)


class MacroSurprise:
    """Calendar events in, ``surprise`` and ``stand_aside`` signals out.

    :param symbols: symbols to publish for; an event of country ``C`` is published for each whose
        country is ``C`` (``*`` when none matches)
    :param min_history: earlier surprises of a code needed before normalising by their spread
    :param inverse_codes: event codes where a higher value is bearish
    :param stand_aside_impact: least impact a preview needs to give a stand-aside window (None: never)
    :param before: how long before the event the stand-aside window opens
    :param after: how long after the event it closes
    """

    def __init__(self, symbols: Iterable[str] = (), *, min_history: int = 3,
                 inverse_codes: Iterable[str] = INVERSE_CODES, stand_aside_impact: str | None = "high",
                 before: dt.timedelta = dt.timedelta(hours=24), after: dt.timedelta = dt.timedelta(hours=12)) -> None:
        if min_history < 2:
            raise ValueError(f"min_history must be at least 2 (a spread needs two surprises), not {min_history}")
        if stand_aside_impact is not None and stand_aside_impact.lower() not in IMPACT_RANK:
            raise ValueError(f"stand_aside_impact {stand_aside_impact!r}: use low, medium or high")
        self.symbols = [s.upper() for s in symbols]
        self.min_history = min_history
        self.inverse_codes = frozenset(c.upper() for c in inverse_codes)
        self.stand_aside_rank = IMPACT_RANK[stand_aside_impact.lower()] if stand_aside_impact else None
        self.before, self.after = before, after
        self._hist: dict[tuple[str, str], _Running] = {}

    def targets(self, country: str) -> list[str]:
        """The symbols a country's signals are published for."""
        mine = [s for s in self.symbols if s.split(":")[1] == country.upper()]
        return mine or ["*"]

    def update(self, ev: Any) -> list[Signal]:
        """Take one calendar event; returns its signals (one per target symbol)."""
        country, code = ev.country_iso_code.upper(), ev.event_code.upper()
        t = ev.event_timestamp
        made: list[tuple[str, float, float, float | None, str, dict[str, Any]]] = []
        if ev.actual_value is not None and ev.forecast_value is not None:
            surprise = float(ev.actual_value) - float(ev.forecast_value)
            run = self._hist.setdefault((country, code), _Running())
            spread = run.std()
            if run.n >= self.min_history and spread > 0:
                z, normalised, conf = surprise / spread, True, min(1.0, 0.4 + run.n / 20)
            else:
                base = abs(float(ev.forecast_value))
                z, normalised, conf = (surprise / base if base else 0.0), False, 0.2
            run.add(surprise)
            sign = -1.0 if code in self.inverse_codes else 1.0
            score = max(-1.0, min(1.0, sign * z / 3))
            made.append(("surprise", score, conf, z, f"{ev.event_name}: actual {ev.actual_value:g} vs forecast "
                         f"{ev.forecast_value:g} ({'z' if normalised else 'relative'} {z:+.2f})",
                         {"event_code": code, "country": country, "surprise": surprise, "normalised": normalised,
                          "history": run.n - 1, "impact": ev.impact}))
        elif (self.stand_aside_rank is not None and ev.actual_value is None
              and IMPACT_RANK.get((ev.impact or "").lower(), 0) >= self.stand_aside_rank):
            start, end = t - self.before, t + self.after
            made.append(("stand_aside", 0.0, 1.0, None, f"{ev.impact} impact {ev.event_name} at {t.isoformat()}",
                         {"event_code": code, "country": country, "from": start.isoformat(), "until": end.isoformat(),
                          "impact": ev.impact}))
        return [Signal(module=MODULE, full_symbol=fs, time=t if kind == "surprise" else t - self.before, kind=kind,
                       score=score, confidence=conf, value=value, reason=reason, data=data)
                for kind, score, conf, value, reason, data in made for fs in self.targets(country)]


__all__ = ["INVERSE_CODES", "MODULE", "MacroSurprise"]
