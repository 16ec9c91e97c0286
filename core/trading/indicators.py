"""Incremental indicators for the per-bar path: O(1) work per new value.

Recomputing an indicator with ``ta`` over a 500-row window costs hundreds of
microseconds per bar; these classes keep just enough state to produce the same
number from the previous one. Each follows the formula of the matching ``ta``
indicator exactly (same seeding, same smoothing), so after warm-up the values
agree with ``ta`` to floating-point rounding — ``tests/test_trading_indicators.py``
checks that on the bundled S&P 500 data.

Common interface: ``update(...)`` feeds one closed bar's value(s) and returns the new
value (``None`` while warming up); ``value`` is the latest value; ``ready`` tells
whether the warm-up is over; ``count`` is how many values were fed.
"""

from __future__ import annotations

import math
from collections import deque

__all__ = ["SMA", "EMA", "RSI", "BollingerBands", "ATR"]


def _check_period(name: str, period: int) -> int:
    if not isinstance(period, int) or isinstance(period, bool) or period < 1:
        raise ValueError(f"{name}: period must be a positive integer, got {period!r}")
    return period


def _check_value(name: str, value: float) -> float:
    x = float(value)
    if not math.isfinite(x):
        raise ValueError(f"{name}: got a non-finite value {value!r}; feed closed bars with real prices")
    return x


class SMA:
    """Simple moving average of the last ``period`` values (``ta.trend.SMAIndicator``).

    Keeps a ring of the window and a running sum; the sum is re-added from the ring
    every ``period`` updates so rounding error cannot build up over long runs
    (amortised O(1)).
    """

    __slots__ = ("period", "_buf", "_sum", "_since_resync", "count", "value")

    def __init__(self, period: int) -> None:
        self.period = _check_period("SMA", period)
        self._buf: deque[float] = deque(maxlen=period)
        self._sum = 0.0
        self._since_resync = 0
        self.count = 0
        self.value: float | None = None

    @property
    def ready(self) -> bool:
        """True once ``period`` values were fed."""
        return self.count >= self.period

    def update(self, x: float) -> float | None:
        """Feed one value; return the average of the last ``period`` values, or None while warming up."""
        x = _check_value("SMA", x)
        buf = self._buf
        if len(buf) == self.period:
            self._sum -= buf[0]
        buf.append(x)
        self._sum += x
        self.count += 1
        self._since_resync += 1
        if self._since_resync >= self.period:
            self._sum = math.fsum(buf)
            self._since_resync = 0
        if self.count >= self.period:
            self.value = self._sum / self.period
        return self.value


class EMA:
    """Exponential moving average, ``alpha = 2 / (period + 1)``, seeded with the first value.

    Same recursion as ``ta.trend.EMAIndicator`` (pandas ``ewm(span=period, adjust=False)``);
    like ``ta`` it reports a value only from the ``period``-th input on.
    """

    __slots__ = ("period", "alpha", "_ema", "count", "value")

    def __init__(self, period: int) -> None:
        self.period = _check_period("EMA", period)
        self.alpha = 2.0 / (period + 1.0)
        self._ema: float | None = None
        self.count = 0
        self.value: float | None = None

    @property
    def ready(self) -> bool:
        """True once ``period`` values were fed."""
        return self.count >= self.period

    def update(self, x: float) -> float | None:
        """Feed one value; return the EMA, or None during the first ``period - 1`` values."""
        x = _check_value("EMA", x)
        if self._ema is None:
            self._ema = x
        else:
            self._ema = self.alpha * x + (1.0 - self.alpha) * self._ema
        self.count += 1
        if self.count >= self.period:
            self.value = self._ema
        return self.value


class RSI:
    """Relative strength index with Wilder smoothing (``alpha = 1 / period``), as ``ta.momentum.RSIIndicator``.

    ``ta`` takes the first bar's gain and loss as 0 and smooths with
    ``ewm(alpha=1/period, adjust=False)`` from there; this class does the same, so the
    values agree from the ``period``-th close on. RSI is 100 when the average loss is 0.
    """

    __slots__ = ("period", "alpha", "_prev", "_up", "_dn", "count", "value")

    def __init__(self, period: int = 14) -> None:
        self.period = _check_period("RSI", period)
        self.alpha = 1.0 / period
        self._prev: float | None = None
        self._up = 0.0
        self._dn = 0.0
        self.count = 0
        self.value: float | None = None

    @property
    def ready(self) -> bool:
        """True once ``period`` closes were fed."""
        return self.count >= self.period

    def update(self, close: float) -> float | None:
        """Feed one close; return the RSI in [0, 100], or None while warming up."""
        close = _check_value("RSI", close)
        if self._prev is not None:
            diff = close - self._prev
            a = self.alpha
            self._up = a * (diff if diff > 0 else 0.0) + (1.0 - a) * self._up
            self._dn = a * (-diff if diff < 0 else 0.0) + (1.0 - a) * self._dn
        self._prev = close
        self.count += 1
        if self.count >= self.period:
            self.value = 100.0 if self._dn == 0 else 100.0 - 100.0 / (1.0 + self._up / self._dn)
        return self.value


class BollingerBands:
    """Bollinger bands: SMA of ``period`` closes ± ``k`` population standard deviations (``ta`` uses ddof=0).

    ``update`` returns ``(lower, middle, upper)`` or None while warming up. Running sums
    of x and x² are re-added from the window every ``period`` updates to bound rounding.
    """

    __slots__ = ("period", "k", "_buf", "_sum", "_sumsq", "_since_resync", "count", "value")

    def __init__(self, period: int = 20, k: float = 2.0) -> None:
        self.period = _check_period("BollingerBands", period)
        self.k = float(k)
        self._buf: deque[float] = deque(maxlen=period)
        self._sum = 0.0
        self._sumsq = 0.0
        self._since_resync = 0
        self.count = 0
        self.value: tuple[float, float, float] | None = None

    @property
    def ready(self) -> bool:
        """True once ``period`` closes were fed."""
        return self.count >= self.period

    def update(self, close: float) -> tuple[float, float, float] | None:
        """Feed one close; return ``(lower, middle, upper)`` or None while warming up."""
        x = _check_value("BollingerBands", close)
        buf = self._buf
        if len(buf) == self.period:
            old = buf[0]
            self._sum -= old
            self._sumsq -= old * old
        buf.append(x)
        self._sum += x
        self._sumsq += x * x
        self.count += 1
        self._since_resync += 1
        if self._since_resync >= self.period:
            self._sum = math.fsum(buf)
            self._sumsq = math.fsum(v * v for v in buf)
            self._since_resync = 0
        if self.count >= self.period:
            n = self.period
            mean = self._sum / n
            var = max(self._sumsq / n - mean * mean, 0.0)
            sd = math.sqrt(var)
            self.value = (mean - self.k * sd, mean, mean + self.k * sd)
        return self.value


class ATR:
    """Average true range with Wilder smoothing, as ``ta.volatility.AverageTrueRange``.

    The first ATR (at the ``period``-th bar) is the mean of the first ``period`` true
    ranges (the first bar's true range is its high - low); then
    ``atr = (atr * (period - 1) + tr) / period``.
    """

    __slots__ = ("period", "_prev_close", "_tr_sum", "count", "value")

    def __init__(self, period: int = 14) -> None:
        self.period = _check_period("ATR", period)
        self._prev_close: float | None = None
        self._tr_sum = 0.0
        self.count = 0
        self.value: float | None = None

    @property
    def ready(self) -> bool:
        """True once ``period`` bars were fed."""
        return self.count >= self.period

    def update(self, high: float, low: float, close: float) -> float | None:
        """Feed one bar's high, low and close; return the ATR or None while warming up."""
        high = _check_value("ATR", high)
        low = _check_value("ATR", low)
        close = _check_value("ATR", close)
        if high < low:
            raise ValueError(f"ATR: high {high} is below low {low}; check the bar's fields")
        tr = high - low
        if self._prev_close is not None:
            pc = self._prev_close
            tr = max(tr, abs(high - pc), abs(low - pc))
        self._prev_close = close
        self.count += 1
        n = self.period
        if self.count < n:
            self._tr_sum += tr
        elif self.count == n:
            self._tr_sum += tr
            self.value = self._tr_sum / n
        else:
            assert self.value is not None
            self.value = (self.value * (n - 1) + tr) / n
        return self.value
