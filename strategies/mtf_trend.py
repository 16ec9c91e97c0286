"""Multi-timeframe trend: trade a lower interval only in the direction of a higher one.

Works on aligned snapshots (``on_mtf``) of one group ``{full_symbol: [lower, higher]}``,
so the higher bar it sees has always closed (no look-ahead). Each time the higher bar in
a snapshot is new, the trend is updated: up while the higher close is above its
``trend_period`` SMA, down when below. Each time the lower bar is new, its fast/slow EMAs
are updated and the wanted side is long (``size``: units or a share of equity) when the trend is up and EMA(fast) >
EMA(slow); short when the trend is down, EMA(fast) < EMA(slow) and ``allow_short``;
flat otherwise. Orders go out only when the wanted position changes.

As a plugin (entry point ``mtf_trend``) it registers one ``MtfTrend`` configured by
``[plugins.mtf_trend]`` (:class:`MtfTrendSettings`); by default the group ``mtf_trend`` is
``{"STOCK:US:SPX": ["DAY", "WEEK"]}`` (the week is aggregated from the bundled days).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from aitrados import hookimpl
from aitrados.marketdata.intervals import interval_rank
from aitrados.trading.indicators import EMA, SMA
from aitrados.trading.strategy import Strategy

from ._settings import SymbolSettings, check_interval, resolve_size

__all__ = ["MtfTrend", "MtfTrendSettings"]


class MtfTrend(Strategy):
    """Lower-interval EMA cross filtered by the higher-interval trend; see the module docstring."""

    name = "mtf_trend"

    def __init__(
        self,
        full_symbol: str = "STOCK:US:SPX",
        lower: str = "DAY",
        higher: str = "WEEK",
        group: str = "mtf_trend",
        trend_period: int = 10,
        fast: int = 5,
        slow: int = 20,
        size: float | str | None = None,
        allow_short: bool = False,
        quantity: float | None = None,
    ) -> None:
        super().__init__()
        if not 0 < fast < slow:
            raise ValueError(f"mtf_trend: need 0 < fast < slow, got fast={fast} slow={slow}")
        if lower == higher:
            raise ValueError("mtf_trend: lower and higher intervals must differ")
        self.full_symbol, self.lower, self.higher, self.group = full_symbol, lower, higher, group
        self.symbols = (full_symbol,)
        self.intervals = (lower, higher)
        self.groups = {group: {full_symbol: [lower, higher]}}
        self.window = slow
        self.trend_sma = SMA(trend_period)
        self.fast, self.slow = EMA(fast), EMA(slow)
        self.size = resolve_size(self.strategy_name, size, quantity)
        #: units per position, or None when the size is a share of equity
        self.quantity: float | None = self.size if isinstance(self.size, float) else None
        self.allow_short = allow_short
        self.trend = 0  # +1 up, -1 down, 0 unknown
        self.wanted = 0  # the side held: +1 long, -1 short, 0 flat
        self._last_higher: Any = None

    def on_bar(self, bar: Any) -> None:
        """Bars come through the aligned snapshots; nothing to do per raw bar."""

    def on_mtf(self, snapshot: Any) -> None:
        """Update the trend and the signal from an aligned snapshot of the group."""
        if getattr(snapshot, "group", self.group) != self.group:
            return
        hb = snapshot.get(self.full_symbol, self.higher)
        if hb is not None and hb.datetime != getattr(self._last_higher, "datetime", None):
            self._last_higher = hb
            sma = self.trend_sma.update(hb.close)
            if sma is not None:
                self.trend = 1 if hb.close > sma else (-1 if hb.close < sma else 0)
        if (self.full_symbol, self.lower) not in snapshot.updated:
            return
        lb = snapshot.get(self.full_symbol, self.lower)
        self.fast.update(lb.close)
        self.slow.update(lb.close)
        if not self.slow.ready:
            return
        assert self.fast.value is not None and self.slow.value is not None
        target = 0
        if self.trend > 0 and self.fast.value > self.slow.value:
            target = 1
        elif self.allow_short and self.trend < 0 and self.fast.value < self.slow.value:
            target = -1
        if target != self.wanted:
            self.ctx.hold(self.full_symbol, target, self.size, tag="entry" if target else "exit")
            self.wanted = target


# ---------------------------------------------------------------------- the plugin (entry point `mtf_trend`)


class MtfTrendSettings(SymbolSettings):
    """``[plugins.mtf_trend]``: the aligned group (one symbol, a lower and a higher interval) and the rule."""

    lower: str = Field("DAY", description="interval traded (EMA cross)")
    higher: str = Field("WEEK", description="interval giving the trend (close vs SMA)")
    group: str = Field("mtf_trend", min_length=1, description="name of the alignment group (topic mtf.<group>)")
    trend_period: int = Field(10, gt=0, description="SMA period of the higher interval, bars")
    fast: int = Field(5, gt=0, description="fast EMA period of the lower interval")
    slow: int = Field(20, gt=0, description="slow EMA period of the lower interval; above fast")

    @field_validator("lower", "higher")
    @classmethod
    def _interval(cls, value: str) -> str:
        return check_interval(value)

    @model_validator(mode="after")
    def _consistent(self) -> MtfTrendSettings:
        if self.fast >= self.slow:
            raise ValueError(f"fast ({self.fast}) must be below slow ({self.slow})")
        if interval_rank(self.lower) >= interval_rank(self.higher):
            raise ValueError(f"lower ({self.lower}) must be a shorter interval than higher ({self.higher})")
        return self


@hookimpl
def register_settings(register: Any) -> None:
    """Declare ``[plugins.mtf_trend]``."""
    register(MtfTrendSettings)


@hookimpl
def register_strategies(register: Any) -> None:
    """Register the multi-timeframe strategy built from the plugin's settings."""
    cfg: MtfTrendSettings = register.settings
    register(MtfTrend(**cfg.model_dump()))
