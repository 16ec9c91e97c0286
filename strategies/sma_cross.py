"""SMA crossover on one symbol, with an option to stand aside around high-impact calendar events.

Rule (checked bar by bar on closed bars of ``interval``): once both averages are ready,
the wanted position is ``+quantity`` while ``SMA(fast) > SMA(slow)``, else flat (or
``-quantity`` with ``allow_short``). An order is sent only when the wanted position
changes (``target_position``), so with the default ``next_open`` broker setting a cross
seen at bar t's close is traded at bar t+1's open.

Standing aside (``stand_aside_impact="high"``): a calendar event of that impact whose
time lies within ``[close - stand_aside_after, close + stand_aside_before]`` of a bar's
close puts the strategy aside for that bar: it opens no new position (exits still go
through). Events are remembered as they arrive on ``on_calendar_event``; a provider that
publishes the schedule ahead lets the "before" side work too. After the window, the rule
is re-evaluated, so an entry missed during it is taken if the signal still holds.

As a plugin (entry point ``sma_cross``) it registers one ``SmaCross`` configured by
``[plugins.sma_cross]`` (:class:`SmaCrossSettings`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import Field, model_validator

from aitrados import hookimpl
from aitrados.marketdata.models import Bar
from aitrados.trading.indicators import SMA
from aitrados.trading.strategy import Strategy

from ._settings import SymbolStrategySettings

__all__ = ["SmaCross", "SmaCrossSettings"]


class SmaCross(Strategy):
    """Long (or long/short) while the fast SMA is above the slow one; see the module docstring."""

    name = "sma_cross"

    def __init__(
        self,
        full_symbol: str = "STOCK:US:SPX",
        interval: str = "DAY",
        fast: int = 10,
        slow: int = 30,
        quantity: float = 10.0,
        allow_short: bool = False,
        stand_aside_impact: str | None = None,
        stand_aside_before: dt.timedelta = dt.timedelta(hours=24),
        stand_aside_after: dt.timedelta = dt.timedelta(hours=12),
    ) -> None:
        super().__init__()
        if not 0 < fast < slow:
            raise ValueError(f"sma_cross: need 0 < fast < slow, got fast={fast} slow={slow}")
        if quantity <= 0:
            raise ValueError(f"sma_cross: quantity must be positive, got {quantity}")
        self.full_symbol = full_symbol
        self.symbols = (full_symbol,)
        self.intervals = (interval,)
        self.window = slow
        self.quantity = float(quantity)
        self.allow_short = allow_short
        self.fast = SMA(fast)
        self.slow = SMA(slow)
        self.stand_aside_impact = stand_aside_impact.lower() if stand_aside_impact else None
        self.stand_aside_before = stand_aside_before
        self.stand_aside_after = stand_aside_after
        self.event_times: list[dt.datetime] = []
        self.wanted = 0.0
        self.skipped_entries = 0

    # ------------------------------------------------------------------ events
    def on_calendar_event(self, event: Any) -> None:
        """Remember events of the stand-aside impact."""
        if self.stand_aside_impact and str(getattr(event, "impact", "")).lower() == self.stand_aside_impact:
            self.event_times.append(event.event_timestamp)

    def standing_aside(self, at: dt.datetime) -> bool:
        """True when a remembered event lies within the stand-aside window around ``at``."""
        lo, hi = at - self.stand_aside_after, at + self.stand_aside_before
        return any(lo <= t <= hi for t in self.event_times)

    def signal(self) -> float:
        """The wanted position from the averages (call after updating them)."""
        assert self.fast.value is not None and self.slow.value is not None
        if self.fast.value > self.slow.value:
            return self.quantity
        return -self.quantity if self.allow_short else 0.0

    def approve_entry(self, bar: Bar, target: float) -> bool:
        """Last say on a new or increased position; subclasses gate it (the LLM-gated strategy)."""
        return True

    def on_bar(self, bar: Bar) -> None:
        """Update the averages and move to the wanted position when it changes."""
        self.fast.update(bar.close)
        self.slow.update(bar.close)
        if not self.slow.ready:
            return
        target = self.signal()
        if target == self.wanted:
            return
        entering = abs(target) > 0 and (self.wanted == 0 or (target > 0) != (self.wanted > 0))
        if entering:
            if self.stand_aside_impact and self.standing_aside(bar.close_datetime):
                self.skipped_entries += 1
                if self.wanted != 0:  # flip wanted: at least close the old side
                    self.ctx.target_position(self.full_symbol, 0.0, tag="exit")
                    self.wanted = 0.0
                return
            if not self.approve_entry(bar, target):
                if self.wanted != 0:
                    self.ctx.target_position(self.full_symbol, 0.0, tag="exit")
                    self.wanted = 0.0
                return
        self.ctx.target_position(self.full_symbol, target, tag="entry" if entering else "exit")
        self.wanted = target


# ---------------------------------------------------------------------- the plugin (entry point `sma_cross`)


class SmaCrossSettings(SymbolStrategySettings):
    """``[plugins.sma_cross]``: the SMA crossover's parameters (defaults trade the bundled SPX days)."""

    fast: int = Field(10, gt=0, description="fast SMA period, bars")
    slow: int = Field(30, gt=0, description="slow SMA period, bars; above fast")
    stand_aside_impact: str | None = Field(None, description="calendar impact to stand aside around, e.g. 'high'")
    stand_aside_before: dt.timedelta = Field(dt.timedelta(hours=24), description="window before an event")
    stand_aside_after: dt.timedelta = Field(dt.timedelta(hours=12), description="window after an event")

    @model_validator(mode="after")
    def _periods(self) -> SmaCrossSettings:
        if self.fast >= self.slow:
            raise ValueError(f"fast ({self.fast}) must be below slow ({self.slow})")
        return self


@hookimpl
def register_settings(register: Any) -> None:
    """Declare ``[plugins.sma_cross]``."""
    register(SmaCrossSettings)


@hookimpl
def register_strategies(register: Any) -> None:
    """Register the crossover built from the plugin's settings."""
    cfg: SmaCrossSettings = register.settings
    register(SmaCross(**cfg.model_dump()))
