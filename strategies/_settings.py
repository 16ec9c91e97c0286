"""Settings shared by the first-party strategy plugins: one symbol, one interval, a quantity.

Each plugin's own model extends :class:`SymbolStrategySettings`; all forbid unknown keys,
so a misspelt setting is an error naming the plugin and the field.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from aitrados.marketdata.intervals import normalize_interval
from aitrados.marketdata.models import normalize_full_symbol

__all__ = ["SymbolSettings", "SymbolStrategySettings", "check_interval", "check_symbol"]


def check_symbol(value: str) -> str:
    """``ASSET:COUNTRY:SYMBOL`` in canonical upper case (ValueError when malformed)."""
    return normalize_full_symbol(value)


def check_interval(value: str) -> str:
    """The canonical interval name (ValueError listing the valid ones)."""
    return normalize_interval(value)


class SymbolSettings(BaseModel):
    """A strategy on one symbol, trading a fixed quantity."""

    model_config = ConfigDict(extra="forbid")

    full_symbol: str = Field("STOCK:US:SPX", description="ASSET:COUNTRY:SYMBOL to trade")
    quantity: float = Field(10.0, gt=0, description="units per position")
    allow_short: bool = Field(False, description="go short on the opposite signal instead of staying flat")

    @field_validator("full_symbol")
    @classmethod
    def _symbol(cls, value: str) -> str:
        return check_symbol(value)


class SymbolStrategySettings(SymbolSettings):
    """A strategy on the closed bars of one symbol and interval."""

    interval: str = Field("DAY", description="interval of the closed bars the rule runs on")

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: str) -> str:
        return check_interval(value)
