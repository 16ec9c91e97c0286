"""Settings shared by the first-party strategy plugins: one symbol, one interval, a size.

Each plugin's own model extends :class:`SymbolStrategySettings`; all forbid unknown keys,
so a misspelt setting is an error naming the plugin and the field.
"""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from aitrados.marketdata.intervals import normalize_interval
from aitrados.marketdata.models import normalize_full_symbol
from aitrados.trading.orders import parse_size

__all__ = ["SymbolSettings", "SymbolStrategySettings", "check_interval", "check_symbol", "check_size", "resolve_size"]


def check_size(value: Any) -> float | str:
    """A position size: units as a float (``50``) or a share of equity as text (``"99.99%"``); ValueError otherwise."""
    units, _ = parse_size(value)
    return units if units is not None else str(value).strip()


def resolve_size(who: str, size: float | str | None, quantity: float | None) -> float | str:
    """The size a strategy trades: ``size``, or the older ``quantity`` (units); ValueError naming ``who`` when bad."""
    if quantity is not None:
        if size is not None:
            raise ValueError(f"{who}: give size or quantity (its older name), not both")
        size = quantity
    try:
        return check_size(10.0 if size is None else size)
    except ValueError as exc:
        raise ValueError(f"{who}: {exc}") from None


def check_symbol(value: str) -> str:
    """``ASSET:COUNTRY:SYMBOL`` in canonical upper case (ValueError when malformed)."""
    return normalize_full_symbol(value)


def check_interval(value: str) -> str:
    """The canonical interval name (ValueError listing the valid ones)."""
    return normalize_interval(value)


class SymbolSettings(BaseModel):
    """A strategy on one symbol, trading a fixed size per position (units or a share of equity)."""

    model_config = ConfigDict(extra="forbid")

    full_symbol: str = Field("STOCK:US:SPX", description="ASSET:COUNTRY:SYMBOL to trade")
    size: float | str = Field(
        10.0,
        validation_alias=AliasChoices("size", "quantity"),
        description="per position: units (50) or a share of equity resolved at the fill price ('99.99%'); "
        "'quantity' is accepted as its older name",
    )
    allow_short: bool = Field(False, description="go short on the opposite signal instead of staying flat")

    @field_validator("full_symbol")
    @classmethod
    def _symbol(cls, value: str) -> str:
        return check_symbol(value)

    @field_validator("size", mode="before")
    @classmethod
    def _size(cls, value: Any) -> float | str:
        return check_size(value)


class SymbolStrategySettings(SymbolSettings):
    """A strategy on the closed bars of one symbol and interval."""

    interval: str = Field("DAY", description="interval of the closed bars the rule runs on")

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: str) -> str:
        return check_interval(value)
