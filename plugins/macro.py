"""The ``macro`` plugin: economic-calendar surprises (normalised per event code over its history)
and stand-aside windows before high-impact events, published on ``signal.macro.<full_symbol>``.

See :mod:`aitrados.signals.macro` for the definitions and docs/signals.md for the records.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from aitrados import hookimpl
from aitrados.signals.macro import INVERSE_CODES, MacroSurprise
from aitrados.signals.publish import SignalModule

__all__ = ["MacroSettings"]


class MacroSettings(BaseModel):
    """``[plugins.macro]``."""

    model_config = ConfigDict(extra="forbid")

    symbols: list[str] = Field(default_factory=lambda: ["STOCK:US:SPX"],
                               description="symbols a country's signals are published for ([] = '*')")
    min_history: int = Field(3, ge=2, description="earlier surprises of a code needed to normalise by their spread")
    inverse_codes: list[str] = Field(default_factory=lambda: sorted(INVERSE_CODES),
                                     description="event codes where a higher value is bearish")
    stand_aside_impact: str | None = Field("high", description="least impact of a previewed event to stand aside for")
    stand_aside_before: dt.timedelta = Field(dt.timedelta(hours=24), description="window opens this long before")
    stand_aside_after: dt.timedelta = Field(dt.timedelta(hours=12), description="window closes this long after")


MODULE = SignalModule()


@hookimpl
def register_settings(register: Any) -> None:
    """Declare ``[plugins.macro]``."""
    register(MacroSettings)


@hookimpl
def on_startup(host: Any) -> None:
    """Build the surprise model from the settings."""
    cfg: MacroSettings = host.plugin_settings("macro") or MacroSettings()
    MODULE.start(host, MacroSurprise(cfg.symbols, min_history=cfg.min_history, inverse_codes=cfg.inverse_codes,
                                     stand_aside_impact=cfg.stand_aside_impact, before=cfg.stand_aside_before,
                                     after=cfg.stand_aside_after))


@hookimpl
def on_calendar_event(event: Any) -> None:
    """Publish the surprise or stand-aside signals of one calendar event."""
    if not isinstance(event, dict):
        MODULE.feed(lambda model: model.update(event))
