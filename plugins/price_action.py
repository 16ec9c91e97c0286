"""The ``price_action`` plugin: swing pivots, support/resistance zones, breakouts and candle
patterns of every closed bar the middleware streams, published as signals.

Each closed bar on ``ohlc.<full_symbol>.<interval>`` (of the charts the middleware runs: those
its strategies need, or added with ``aitrados call chart add``) goes through an
:class:`aitrados.signals.price_action.PriceAction` detector per series; every signal it gives
is published on ``signal.price_action.<full_symbol>``. Strategies subscribe to those topics and
never import this module; run it in-process or ``--isolate price_action``, or replace it with
any plugin publishing the same records.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from aitrados import hookimpl
from aitrados.signals.price_action import PriceAction
from aitrados.signals.publish import SignalModule

__all__ = ["PriceActionSettings"]


class PriceActionSettings(BaseModel):
    """``[plugins.price_action]``: which series to analyse and the detector's parameters."""

    model_config = ConfigDict(extra="forbid")

    symbols: list[str] = Field(default_factory=list, description="full symbols to analyse ([] = every streamed one)")
    intervals: list[str] = Field(default_factory=list, description="intervals to analyse ([] = every streamed one)")
    left: int = Field(3, ge=1, le=100, description="bars before a pivot that must be lower (higher for a low)")
    right: int = Field(3, ge=1, le=100, description="bars after a pivot that must not exceed it")
    zone_pct: float = Field(0.0, ge=0, lt=1, description="half-width of a support/resistance band (fraction)")
    pin_wick: float = Field(0.6, gt=0, le=1, description="least share of the range the pin bar's long wick takes")
    pin_body: float = Field(0.3, ge=0, lt=1, description="largest share of the range the pin bar's body takes")


MODULE = SignalModule()


@hookimpl
def register_settings(register: Any) -> None:
    """Declare ``[plugins.price_action]``."""
    register(PriceActionSettings)


@hookimpl
def on_startup(host: Any) -> None:
    """Keep the host (for publishing) and the settings; start with no history."""
    MODULE.start(host, {"cfg": host.plugin_settings("price_action") or PriceActionSettings(), "detectors": {}})


def _step(state: dict[str, Any], bar: Any) -> list[Any]:
    cfg: PriceActionSettings = state["cfg"]
    if (cfg.symbols and bar.full_symbol not in cfg.symbols) or (cfg.intervals and bar.interval not in cfg.intervals):
        return []
    key = (bar.full_symbol, bar.interval)
    det = state["detectors"].get(key)
    if det is None:
        det = state["detectors"][key] = PriceAction(bar.full_symbol, bar.interval, left=cfg.left, right=cfg.right,
                                                    zone_pct=cfg.zone_pct, pin_wick=cfg.pin_wick,
                                                    pin_body=cfg.pin_body)
    return det.update(bar)


@hookimpl
def on_bar(bar: Any) -> None:
    """Analyse each closed bar of the selected series and publish its signals."""
    if getattr(bar, "closed", False):
        MODULE.feed(lambda state: _step(state, bar))
