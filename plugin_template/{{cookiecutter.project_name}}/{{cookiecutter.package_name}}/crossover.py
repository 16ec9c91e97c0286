"""The strategy's pure logic: two moving averages and their crossings (no I/O, no plugin code)."""

from __future__ import annotations

from collections import deque


class MovingAverage:
    """Simple moving average over the last *length* values, updated in O(1)."""

    def __init__(self, length: int) -> None:
        if length < 1:
            raise ValueError(f"length must be at least 1, got {length}")
        self.length = length
        self._values: deque[float] = deque(maxlen=length)
        self._sum = 0.0

    def update(self, value: float) -> float | None:
        """Add *value*; returns the average once *length* values were seen, else None."""
        if len(self._values) == self.length:
            self._sum -= self._values[0]
        self._values.append(value)
        self._sum += value
        return self._sum / self.length if len(self._values) == self.length else None


class Crossover:
    """Signals when the fast average crosses the slow one: ``"buy"`` upwards, ``"sell"`` downwards."""

    def __init__(self, fast: int, slow: int) -> None:
        if fast >= slow:
            raise ValueError(f"fast ({fast}) must be shorter than slow ({slow})")
        self.fast, self.slow = MovingAverage(fast), MovingAverage(slow)
        self._above: bool | None = None

    def update(self, close: float) -> str | None:
        """Feed one closing price; returns ``"buy"``, ``"sell"`` or None."""
        f, s = self.fast.update(close), self.slow.update(close)
        if f is None or s is None or f == s:
            return None
        above = f > s
        prev, self._above = self._above, above
        if prev is None or prev == above:
            return None
        return "buy" if above else "sell"
