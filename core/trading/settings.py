"""Settings of the trading loop, grouped for one field of the middleware's settings.

Add ``trading: TradingSettings = Field(default_factory=TradingSettings)`` to
``aitrados.settings.Settings`` and every value is settable as ``AITRADOS_TRADING__BROKER__FILL_AT``,
``AITRADOS_TRADING__RISK__MAX_POSITION``, ``AITRADOS_TRADING__LLM__BASE_URL`` … or in
``aitrados.toml`` under ``[trading.broker]``, ``[trading.risk]``, ``[trading.llm]``.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, Field

from .broker import BrokerSettings, PaperBroker
from .engine import TradingEngine
from .llm import LLMSettings
from .risk import RiskCheck, RiskEngine, RiskLimits
from .strategy import Strategy

__all__ = ["TradingSettings", "engine_from_settings"]


class TradingSettings(BaseModel):
    """Broker, risk and LLM settings plus where reports go."""

    model_config = {"extra": "forbid"}

    broker: BrokerSettings = Field(default_factory=BrokerSettings)
    risk: RiskLimits = Field(default_factory=RiskLimits)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    report_dir: str = Field("aitrados-report", description="folder of the end-of-run reports: a run-<UTC time> "
                            "folder per run and a `latest` link to the newest")
    allow_strategy_errors: bool = Field(
        False, description="a run whose strategy callbacks raised still exits 0 (default: exit status 1)")


def engine_from_settings(
    strategies: Iterable[Strategy], settings: TradingSettings | None = None, checks: Iterable[RiskCheck] = ()
) -> TradingEngine:
    """A :class:`TradingEngine` with a broker and risk engine built from ``settings`` and the external ``checks``."""
    s = settings or TradingSettings()
    return TradingEngine(strategies, PaperBroker(s.broker), RiskEngine(s.risk, list(checks)))
