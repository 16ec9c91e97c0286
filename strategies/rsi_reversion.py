"""RSI mean reversion on one symbol.

Rule on closed bars of ``interval``, with the incremental Wilder RSI (same values as
``ta.momentum.RSIIndicator``): when flat, buy ``size`` (units or a share of equity) when RSI < ``oversold``; when
long, exit when RSI > ``exit_long``. With ``allow_short``: when flat, sell short when
RSI > ``overbought``; when short, cover when RSI < ``exit_short``.

As a plugin (entry point ``rsi_reversion``) it registers one ``RsiReversion`` configured by
``[plugins.rsi_reversion]`` (:class:`RsiReversionSettings`).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from aitrados import hookimpl
from aitrados.marketdata.models import Bar
from aitrados.trading.indicators import RSI
from aitrados.trading.strategy import Strategy

from ._settings import SymbolStrategySettings, resolve_size

__all__ = ["RsiReversion", "RsiReversionSettings"]


class RsiReversion(Strategy):
    """Buy oversold, sell when the RSI recovers; see the module docstring."""

    name = "rsi_reversion"

    def __init__(
        self,
        full_symbol: str = "STOCK:US:SPX",
        interval: str = "DAY",
        period: int = 14,
        oversold: float = 30.0,
        exit_long: float = 55.0,
        overbought: float = 70.0,
        exit_short: float = 45.0,
        size: float | str | None = None,
        allow_short: bool = False,
        quantity: float | None = None,
    ) -> None:
        super().__init__()
        if not (0 < oversold < exit_long < 100 and 0 < exit_short < overbought < 100):
            raise ValueError(
                "rsi_reversion: need 0 < oversold < exit_long < 100 and 0 < exit_short < overbought < 100"
            )
        self.full_symbol = full_symbol
        self.symbols = (full_symbol,)
        self.intervals = (interval,)
        self.window = period + 1
        self.rsi = RSI(period)
        self.oversold, self.exit_long = oversold, exit_long
        self.overbought, self.exit_short = overbought, exit_short
        self.size = resolve_size(self.strategy_name, size, quantity)
        #: units per position, or None when the size is a share of equity
        self.quantity: float | None = self.size if isinstance(self.size, float) else None
        self.allow_short = allow_short
        self.wanted = 0  # the side held: +1 long, -1 short, 0 flat

    def on_bar(self, bar: Bar) -> None:
        """Update the RSI and act on the thresholds."""
        value = self.rsi.update(bar.close)
        if value is None:
            return
        target = self.wanted
        if self.wanted == 0:
            if value < self.oversold:
                target = 1
            elif self.allow_short and value > self.overbought:
                target = -1
        elif self.wanted > 0 and value > self.exit_long:
            target = 0
        elif self.wanted < 0 and value < self.exit_short:
            target = 0
        if target != self.wanted:
            self.ctx.hold(self.full_symbol, target, self.size, tag="entry" if target else "exit")
            self.wanted = target


# ---------------------------------------------------------------------- the plugin (entry point `rsi_reversion`)


class RsiReversionSettings(SymbolStrategySettings):
    """``[plugins.rsi_reversion]``: RSI period and thresholds (defaults trade the bundled SPX days)."""

    period: int = Field(14, gt=1, description="RSI period, bars (Wilder)")
    oversold: float = Field(30.0, description="buy below this RSI when flat")
    exit_long: float = Field(55.0, description="sell a long above this RSI")
    overbought: float = Field(70.0, description="short above this RSI when flat (allow_short)")
    exit_short: float = Field(45.0, description="cover a short below this RSI")

    @model_validator(mode="after")
    def _levels(self) -> RsiReversionSettings:
        if not (0 < self.oversold < self.exit_long < 100 and 0 < self.exit_short < self.overbought < 100):
            raise ValueError("need 0 < oversold < exit_long < 100 and 0 < exit_short < overbought < 100")
        return self


@hookimpl
def register_settings(register: Any) -> None:
    """Declare ``[plugins.rsi_reversion]``."""
    register(RsiReversionSettings)


@hookimpl
def register_strategies(register: Any) -> None:
    """Register the mean-reversion strategy built from the plugin's settings."""
    cfg: RsiReversionSettings = register.settings
    register(RsiReversion(**cfg.model_dump()))
