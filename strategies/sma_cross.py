"""SMA crossover on one symbol, with an option to stand aside around high-impact calendar events.

Rule (checked bar by bar on closed bars of ``interval``). With ``entry="cross"`` (the
default, as backtesting.py's ``crossover``): when the fast average crosses above the slow one
(below at the previous bar, strictly above now) the strategy goes long; when it crosses
below, it goes flat (or short with ``allow_short``); before the first cross it stays flat.
With ``entry="state"`` it holds the side given by the averages as soon as both are ready
(long while ``SMA(fast) > SMA(slow)``, else flat or short). ``size`` is per position: units
(``10``) or a share of equity sized at the fill price (``"99.99%"``). ``stop_loss_pct`` /
``take_profit_pct`` attach a bracket to each entry, at that distance from the entry bar's close. Orders go out only
when the wanted side changes (:meth:`StrategyContext.hold`: a reversal is a close then an
open), so with the default ``next_open`` broker setting a cross seen at bar t's close is
traded at bar t+1's open.

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
from typing import Any, Literal

from pydantic import Field, model_validator

from aitrados import hookimpl
from aitrados.marketdata.models import Bar
from aitrados.trading.indicators import SMA
from aitrados.trading.strategy import Strategy

from ._settings import SymbolStrategySettings, resolve_size

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
        size: float | str | None = None,
        allow_short: bool = False,
        stand_aside_impact: str | None = None,
        stand_aside_before: dt.timedelta = dt.timedelta(hours=24),
        stand_aside_after: dt.timedelta = dt.timedelta(hours=12),
        entry: Literal["cross", "state"] = "cross",
        stop_loss_pct: float | None = None,
        take_profit_pct: float | None = None,
        quantity: float | None = None,
    ) -> None:
        super().__init__()
        if not 0 < fast < slow:
            raise ValueError(f"sma_cross: need 0 < fast < slow, got fast={fast} slow={slow}")
        if entry not in ("cross", "state"):
            raise ValueError(f"sma_cross: entry must be 'cross' or 'state', got {entry!r}")
        self.size = resolve_size(self.strategy_name, size, quantity)
        #: units per position, or None when the size is a share of equity
        self.quantity: float | None = self.size if isinstance(self.size, float) else None
        for name, pct in (("stop_loss_pct", stop_loss_pct), ("take_profit_pct", take_profit_pct)):
            if pct is not None and not 0 < pct < 1:
                raise ValueError(f"sma_cross: {name} must be a fraction in (0, 1), got {pct}")
        self.entry = entry
        self.stop_loss_pct, self.take_profit_pct = stop_loss_pct, take_profit_pct
        self.full_symbol = full_symbol
        self.symbols = (full_symbol,)
        self.intervals = (interval,)
        self.window = slow
        self.allow_short = allow_short
        self.fast = SMA(fast)
        self.slow = SMA(slow)
        self.stand_aside_impact = stand_aside_impact.lower() if stand_aside_impact else None
        self.stand_aside_before = stand_aside_before
        self.stand_aside_after = stand_aside_after
        self.event_times: list[dt.datetime] = []
        self.wanted = 0  # the side held: +1 long, -1 short, 0 flat
        self.skipped_entries = 0
        self._prev: tuple[float, float] | None = None
        self._side = 0  # the side of the last crossover (entry="cross")

    # ------------------------------------------------------------------ events
    def on_calendar_event(self, event: Any) -> None:
        """Remember events of the stand-aside impact."""
        if self.stand_aside_impact and str(getattr(event, "impact", "")).lower() == self.stand_aside_impact:
            self.event_times.append(event.event_timestamp)

    def standing_aside(self, at: dt.datetime) -> bool:
        """True when a remembered event lies within the stand-aside window around ``at``."""
        lo, hi = at - self.stand_aside_after, at + self.stand_aside_before
        return any(lo <= t <= hi for t in self.event_times)

    def signal(self) -> int:
        """The side the rule wants now: +1 long, -1 short (with ``allow_short``) or 0 flat.

        ``entry="state"``: the averages' side; ``entry="cross"``: the side of the last crossover
        (0 before the first). Call after :meth:`update`.
        """
        if self.entry == "cross":
            return self._side
        assert self.fast.value is not None and self.slow.value is not None
        if self.fast.value > self.slow.value:
            return 1
        return -1 if self.allow_short else 0

    def state(self) -> dict[str, Any]:
        """The averages (drawn over the candles), the wanted position and why."""
        f, sl = self.fast.value, self.slow.value
        if f is None or sl is None:
            reason = f"warming up: {self.slow.count}/{self.slow.period} bars"
        else:
            reason = f"SMA{self.fast.period} {'above' if f > sl else 'at or below'} SMA{self.slow.period}"
        return {"indicators": {f"sma{self.fast.period}": f, f"sma{self.slow.period}": sl},
                "signal": self.wanted, "reason": reason, "skipped_entries": self.skipped_entries}

    def update(self, close: float) -> bool:
        """Feed a close to both averages (and note a crossover); True once both are ready."""
        self.fast.update(close)
        self.slow.update(close)
        if not self.slow.ready:
            return False
        f1, s1 = self.fast.value, self.slow.value
        assert f1 is not None and s1 is not None
        if self._prev is not None:
            f0, s0 = self._prev
            if f0 < s0 and f1 > s1:
                self._side = 1
            elif f0 > s0 and f1 < s1:
                self._side = -1 if self.allow_short else 0
        self._prev = (f1, s1)
        return True

    def approve_entry(self, bar: Bar, target: int) -> bool:
        """Last say on a new position on side ``target``; subclasses gate it (the LLM-gated strategy)."""
        return True

    def on_bar(self, bar: Bar) -> None:
        """Update the averages and move to the wanted side when it changes."""
        if not self.update(bar.close):
            return
        target = self.signal()
        if target == self.wanted:
            return
        entering = target != 0
        if entering:
            if self.stand_aside_impact and self.standing_aside(bar.close_datetime):
                self.skipped_entries += 1
                if self.wanted != 0:  # flip wanted: at least close the old side
                    self.ctx.hold(self.full_symbol, 0, self.size, tag="exit")
                    self.wanted = 0
                return
            if not self.approve_entry(bar, target):
                if self.wanted != 0:
                    self.ctx.hold(self.full_symbol, 0, self.size, tag="exit")
                    self.wanted = 0
                return
        sl = tp = None
        if entering:  # bracket levels from this close: a long's stop below it, a short's above
            if self.stop_loss_pct is not None:
                sl = bar.close * (1 - self.stop_loss_pct) if target > 0 else bar.close * (1 + self.stop_loss_pct)
            if self.take_profit_pct is not None:
                tp = bar.close * (1 + self.take_profit_pct) if target > 0 else bar.close * (1 - self.take_profit_pct)
        self.ctx.hold(self.full_symbol, target, self.size, tag="entry" if entering else "exit", stop_loss=sl, take_profit=tp)
        self.wanted = target


# ---------------------------------------------------------------------- the plugin (entry point `sma_cross`)


class SmaCrossSettings(SymbolStrategySettings):
    """``[plugins.sma_cross]``: the SMA crossover's parameters (defaults trade the bundled SPX days)."""

    fast: int = Field(10, gt=0, description="fast SMA period, bars")
    slow: int = Field(30, gt=0, description="slow SMA period, bars; above fast")
    stand_aside_impact: str | None = Field(None, description="calendar impact to stand aside around, e.g. 'high'")
    stand_aside_before: dt.timedelta = Field(dt.timedelta(hours=24), description="window before an event")
    stand_aside_after: dt.timedelta = Field(dt.timedelta(hours=12), description="window after an event")
    entry: Literal["cross", "state"] = Field(
        "cross", description="'cross': enter on a crossover (as backtesting.py); 'state': hold the averages' side from the start"
    )
    stop_loss_pct: float | None = Field(None, gt=0, lt=1, description="attach a stop-loss this far from the entry "
                                        "bar's close (0.05 = 5 %)")
    take_profit_pct: float | None = Field(None, gt=0, lt=1, description="attach a take-profit this far from the entry "
                                          "bar's close")

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
