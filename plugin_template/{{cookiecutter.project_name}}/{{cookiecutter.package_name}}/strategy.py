"""The {{ cookiecutter.plugin_name }} strategy: a channel breakout on {{ cookiecutter.full_symbol }} {{ cookiecutter.interval }}, and its settings.

Rule, checked on each closed bar: flat, a close above the highest high of the previous
``entry_bars`` bars buys ``quantity``; long, a close below the lowest low of the previous
``exit_bars`` bars sells it all. The engine fills a market order at the next bar's open
(broker setting ``fill_at``), so a signal at bar t's close trades at bar t+1's open.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from aitrados.marketdata.intervals import normalize_interval
from aitrados.marketdata.models import Bar, normalize_full_symbol
from aitrados.trading.strategy import Strategy

from .channel import Channel

#: The plugin's name: the entry point in pyproject.toml, the settings key and the strategy's name.
NAME = "{{ cookiecutter.plugin_name }}"


class BreakoutSettings(BaseModel):
    """``[plugins.{{ cookiecutter.plugin_name }}]`` in aitrados.toml, or ``AITRADOS_PLUGINS__{{ cookiecutter.plugin_name.upper() }}__ENTRY_BARS=...``.

    Unknown keys are an error, so a misspelt setting names the plugin and the field.
    """

    model_config = ConfigDict(extra="forbid")

    full_symbol: str = Field("{{ cookiecutter.full_symbol }}", description="ASSET:COUNTRY:SYMBOL to trade")
    interval: str = Field("{{ cookiecutter.interval }}", description="interval of the closed bars the rule runs on")
    entry_bars: int = Field(20, ge=1, description="a close above the high of this many previous bars buys")
    exit_bars: int = Field(10, ge=1, description="a close below the low of this many previous bars sells")
    quantity: float = Field(10.0, gt=0, description="units bought on each entry")

    @field_validator("full_symbol")
    @classmethod
    def _symbol(cls, value: str) -> str:
        return normalize_full_symbol(value)

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: str) -> str:
        return normalize_interval(value)


class Breakout(Strategy):
    """Long on a close above the entry channel, flat on a close below the exit channel (see the module docstring)."""

    name = NAME

    def __init__(self, settings: BreakoutSettings | None = None) -> None:
        super().__init__()
        self.settings = settings or BreakoutSettings()
        s = self.settings
        self.symbols = (s.full_symbol,)  # the host subscribes to these and replays them
        self.intervals = (s.interval,)
        self.entry_channel = Channel(s.entry_bars)
        self.exit_channel = Channel(s.exit_bars)
        self.long = False

    def on_bar(self, bar: Bar) -> None:
        """Compare the close with the channels of the bars before it, trade on a breakout, then feed the bar."""
        upper, lower = self.entry_channel.upper, self.exit_channel.lower  # None until the channel is full
        if not self.long and upper is not None and bar.close > upper:
            self.ctx.target_position(bar.full_symbol, self.settings.quantity, tag="entry")
            self.long = True
        elif self.long and lower is not None and bar.close < lower:
            self.ctx.target_position(bar.full_symbol, 0.0, tag="exit")
            self.long = False
        self.entry_channel.update(bar.high, bar.low)
        self.exit_channel.update(bar.high, bar.low)
