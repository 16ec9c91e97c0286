"""The strategy's pure logic: a price channel over the last bars (no I/O, no plugin code)."""

from __future__ import annotations

from collections import deque


class Channel:
    """The highest high and the lowest low of the last *length* bars fed to :meth:`update`.

    Read :attr:`upper` and :attr:`lower` *before* feeding the current bar to compare its close
    with the channel of the bars before it (a breakout), then feed it.
    """

    def __init__(self, length: int) -> None:
        if length < 1:
            raise ValueError(f"channel length must be at least 1, got {length}")
        self.length = length
        self._highs: deque[float] = deque(maxlen=length)
        self._lows: deque[float] = deque(maxlen=length)

    @property
    def ready(self) -> bool:
        """True once *length* bars were fed."""
        return len(self._highs) == self.length

    @property
    def upper(self) -> float | None:
        """The highest high of the last *length* bars; None until ready."""
        return max(self._highs) if self.ready else None

    @property
    def lower(self) -> float | None:
        """The lowest low of the last *length* bars; None until ready."""
        return min(self._lows) if self.ready else None

    def update(self, high: float, low: float) -> None:
        """Feed one bar's high and low (the oldest bar drops out once *length* were fed)."""
        if high < low:
            raise ValueError(f"bar high {high} is below its low {low}")
        self._highs.append(high)
        self._lows.append(low)
