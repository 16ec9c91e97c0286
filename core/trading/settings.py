"""Settings of the trading loop: the paper broker, the risk limits, the LLM client and the reports.

Plain pydantic models and nothing else (importing this module loads neither the engine nor the
broker, the LLM client or a strategy), nested in the middleware's :class:`aitrados.settings.Settings`
as ``trading``: every value is settable as ``AITRADOS_TRADING__BROKER__FILL_AT``,
``AITRADOS_TRADING__RISK__MAX_POSITION``, ``AITRADOS_TRADING__LLM__BASE_URL`` … or in
``aitrados.toml`` under ``[trading.broker]``, ``[trading.risk]``, ``[trading.llm]``.

The models are re-exported where they are used (``aitrados.trading.broker.BrokerSettings``,
``aitrados.trading.risk.RiskLimits``, ``aitrados.trading.llm.LLMSettings``).
:func:`~aitrados.trading.engine.engine_from_settings` builds an engine from them.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, model_validator

__all__ = ["BrokerSettings", "LLMSettings", "RiskLimits", "TradingSettings"]


class BrokerSettings(BaseModel):
    """Settings of the paper broker."""

    model_config = {"extra": "forbid"}

    initial_cash: float = Field(100_000.0, gt=0, description="starting cash")
    fill_at: Literal["next_open", "close"] = Field("next_open", description="market orders: next bar's open or current close")
    commission_per_share: float = Field(0.0, ge=0, description="commission per unit traded")
    commission_bps: float = Field(0.0, ge=0, description="commission in basis points of notional")
    min_commission: float = Field(0.0, ge=0, description="least commission per fill (0 = none)")
    slippage_bps: float = Field(0.0, ge=0, description="market-order slippage in basis points, against the order")
    allow_short: bool = Field(True, description="allow sells that leave a negative position")
    allow_margin: bool = Field(False, description="allow buys that take cash below zero")
    initial_margin: float = Field(
        1.0, gt=0, le=1, description="share of an opening order's notional the free equity must cover (1 = no leverage, 0.5 = 2x)"
    )
    maintenance_margin: float = Field(
        0.25, ge=0, le=1, description="equity below this share of gross exposure triggers a margin call (liquidation)"
    )

    @model_validator(mode="after")
    def _margins(self) -> "BrokerSettings":
        if self.maintenance_margin > self.initial_margin:
            raise ValueError(
                f"maintenance_margin ({self.maintenance_margin}) must not exceed initial_margin ({self.initial_margin})"
            )
        return self


class RiskLimits(BaseModel):
    """Limits of the built-in rules; ``None`` switches a rule off."""

    model_config = {"extra": "forbid"}

    max_position: float | None = Field(None, gt=0, description="largest absolute position per symbol, in units")
    max_position_by_symbol: dict[str, float] = Field(
        default_factory=dict, description="per-symbol overrides of max_position (full_symbol -> units)"
    )
    max_order_notional: float | None = Field(None, gt=0, description="largest quantity * price of one order")
    max_order_quantity: float | None = Field(1e9, gt=0, description="largest quantity of one order, in units")
    max_order_equity_multiple: float | None = Field(
        2.0, gt=0, description="largest worst-case notional of an exposure-increasing order, as a multiple of equity"
    )
    max_orders: int | None = Field(None, ge=1, description="most accepted orders within orders_window_seconds")
    orders_window_seconds: float = Field(86400.0, gt=0, description="window of max_orders, bar-clock seconds")
    daily_loss_limit: float | None = Field(
        None, gt=0, description="loss from the day's first equity at which exposure-increasing orders stop"
    )


class LLMSettings(BaseModel):
    """Where and how to reach an OpenAI-compatible chat server."""

    model_config = {"extra": "forbid"}

    base_url: str = Field("http://127.0.0.1:11434/v1", description="server URL up to /v1 (Ollama's default here)")
    model: str = Field("llama3.2", description="model name the server knows")
    api_key: SecretStr | None = Field(None, description="API key; default read from the env var api_key_env")
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the key")
    timeout: float = Field(10.0, gt=0, description="seconds for one request (connect, read, write)")
    temperature: float = Field(0.0, ge=0, description="sampling temperature; 0 for repeatable answers")
    max_tokens: int = Field(200, ge=1, description="reply length limit")

    def key(self) -> str | None:
        """The API key from the settings or the environment (None when neither has one)."""
        if self.api_key is not None:
            return self.api_key.get_secret_value() or None
        return os.environ.get(self.api_key_env) or None


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


def __getattr__(name: str) -> Any:
    """``engine_from_settings`` moved to :mod:`aitrados.trading.engine`; still importable from here
    (plugins made from an older template do), loaded only when asked for."""
    if name == "engine_from_settings":
        from .engine import engine_from_settings

        return engine_from_settings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
