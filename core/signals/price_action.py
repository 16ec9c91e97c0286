"""Price action, bar by bar: swing pivots, support/resistance zones, breakouts and candle patterns.

:class:`PriceAction` is pure logic (no I/O): feed it closed bars of one symbol and interval, in
order, and it returns the :class:`~aitrados.signals.record.Signal` records each bar causes, in
O(1) per bar. The definitions (each mirrored by a pandas reference in the tests):

- **pivot high** at bar *i*: its high is strictly above the ``left`` highs before it and at least
  the ``right`` highs after it; known (and signalled) at bar *i + right*. Pivot low: mirrored.
- **zones**: the latest pivot high is resistance, the latest pivot low support, each a band of
  ``zone_pct`` around the level.
- **breakout**: the first close above the resistance band (``breakout_up``) or below the support
  band (``breakout_down``) after that pivot was known; one breakout per pivot.
- **inside bar**: high below and low above the previous bar's; **outside bar**: high above and
  low below.
- **engulfing**: a bullish body (close > open) after a bearish one whose body it covers
  (open <= previous close, close >= previous open), or the mirror for bearish.
- **pin bar**: range > 0, body at most ``pin_body`` of the range, and the lower wick (bullish)
  or upper wick (bearish) at least ``pin_wick`` of it.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from .record import Signal

MODULE = "price_action"


class PriceAction:
    """Incremental price-action detector for one ``(full_symbol, interval)`` series.

    :param full_symbol: the symbol the signals are about
    :param interval: the bars' interval (recorded in each signal's ``data``)
    :param left: bars before a pivot that must be lower (higher for a low)
    :param right: bars after a pivot that must not exceed it; the pivot is known *right* bars later
    :param zone_pct: half-width of a support/resistance band, as a fraction of the level
    :param pin_wick: least share of the range the pin bar's long wick takes
    :param pin_body: largest share of the range the pin bar's body takes
    """

    def __init__(self, full_symbol: str, interval: str, *, left: int = 3, right: int = 3, zone_pct: float = 0.0,
                 pin_wick: float = 0.6, pin_body: float = 0.3) -> None:
        if left < 1 or right < 1:
            raise ValueError(f"pivot sides must be at least 1 bar (left={left}, right={right})")
        if not 0 <= zone_pct < 1 or not 0 < pin_wick <= 1 or not 0 <= pin_body < 1:
            raise ValueError("zone_pct in [0, 1), pin_wick in (0, 1], pin_body in [0, 1)")
        self.full_symbol, self.interval = full_symbol, interval
        self.left, self.right, self.zone_pct = left, right, zone_pct
        self.pin_wick, self.pin_body = pin_wick, pin_body
        self._bars: deque[tuple[Any, float, float, float, float]] = deque(maxlen=left + right + 1)
        self.resistance: float | None = None
        self.support: float | None = None
        self._res_broken = True
        self._sup_broken = True

    def _signal(self, t: Any, kind: str, score: float, confidence: float, value: float | None, reason: str,
                **data: Any) -> Signal:
        return Signal(module=MODULE, full_symbol=self.full_symbol, time=t, kind=kind, score=score,
                      confidence=confidence, value=value, reason=reason, data={"interval": self.interval, **data})

    def update(self, bar: Any) -> list[Signal]:
        """Take the next closed bar (anything with ``datetime, open, high, low, close``); returns its signals."""
        t, o, h, lo, c = bar.datetime, float(bar.open), float(bar.high), float(bar.low), float(bar.close)
        out: list[Signal] = []
        prev = self._bars[-1] if self._bars else None
        if prev is not None:
            _, po, ph, pl, pc = prev
            if h < ph and lo > pl:
                out.append(self._signal(t, "inside_bar", 0.0, 0.3, c, "range inside the previous bar's"))
            elif h > ph and lo < pl:
                out.append(self._signal(t, "outside_bar", 0.0, 0.3, c, "range beyond the previous bar's on both sides"))
            if pc < po and c > o and o <= pc and c >= po:
                out.append(self._signal(t, "engulfing_bull", 0.6, 0.5, c, "bullish body engulfs the previous bearish body"))
            elif pc > po and c < o and o >= pc and c <= po:
                out.append(self._signal(t, "engulfing_bear", -0.6, 0.5, c, "bearish body engulfs the previous bullish body"))
        rng = h - lo
        if rng > 0 and abs(c - o) <= self.pin_body * rng:
            if min(o, c) - lo >= self.pin_wick * rng:
                out.append(self._signal(t, "pin_bar_bull", 0.5, 0.4, c, "long lower wick: buyers rejected lower prices"))
            elif h - max(o, c) >= self.pin_wick * rng:
                out.append(self._signal(t, "pin_bar_bear", -0.5, 0.4, c, "long upper wick: sellers rejected higher prices"))
        z = self.zone_pct
        if self.resistance is not None and not self._res_broken and c > self.resistance * (1 + z):
            self._res_broken = True
            out.append(self._signal(t, "breakout_up", 0.8, 0.6, self.resistance,
                                    f"close {c:g} above resistance {self.resistance:g}"))
        if self.support is not None and not self._sup_broken and c < self.support * (1 - z):
            self._sup_broken = True
            out.append(self._signal(t, "breakout_down", -0.8, 0.6, self.support,
                                    f"close {c:g} below support {self.support:g}"))
        self._bars.append((t, o, h, lo, c))
        if len(self._bars) == self._bars.maxlen:
            bars = list(self._bars)
            mt, _, mh, ml, _ = bars[self.left]
            before, after = bars[:self.left], bars[self.left + 1:]
            if mh > max(b[2] for b in before) and mh >= max(b[2] for b in after):
                self.resistance, self._res_broken = mh, False
                out.append(self._signal(t, "pivot_high", -0.3, 0.5, mh, f"swing high {mh:g} (resistance)",
                                        pivot_time=mt.isoformat(), zone=[mh * (1 - z), mh * (1 + z)]))
            if ml < min(b[3] for b in before) and ml <= min(b[3] for b in after):
                self.support, self._sup_broken = ml, False
                out.append(self._signal(t, "pivot_low", 0.3, 0.5, ml, f"swing low {ml:g} (support)",
                                        pivot_time=mt.isoformat(), zone=[ml * (1 - z), ml * (1 + z)]))
        return out


__all__ = ["MODULE", "PriceAction"]
