"""The {{ cookiecutter.plugin_name }} plugin: a moving-average crossover on {{ cookiecutter.full_symbol }} {{ cookiecutter.interval }}.

The host calls these hooks (see docs/plugins.md of aitrados for all of them). On each closed
bar the strategy updates its averages; on a crossing it asks the risk hooks about an order
intent and, when accepted, publishes it on ``intent.{{ cookiecutter.plugin_name }}``.
"""

from __future__ import annotations

from typing import Any

from loguru import logger
from pydantic import BaseModel, ConfigDict, Field

from aitrados import hookimpl

from .crossover import Crossover

#: The plugin's name: the entry point in pyproject.toml and the settings key.
NAME = "{{ cookiecutter.plugin_name }}"


class Settings(BaseModel):
    """Settings under ``plugins.{{ cookiecutter.plugin_name }}`` (aitrados.toml or AITRADOS_PLUGINS__{{ cookiecutter.plugin_name.upper() }}__FAST=...)."""

    model_config = ConfigDict(extra="forbid")

    full_symbol: str = "{{ cookiecutter.full_symbol }}"
    interval: str = "{{ cookiecutter.interval }}"
    fast: int = Field(5, ge=1, description="bars in the fast average")
    slow: int = Field(20, ge=2, description="bars in the slow average")
    quantity: float = Field(1.0, gt=0, description="order size of each signal")


class _State:
    host: Any = None
    settings: Settings = Settings()
    signals: Crossover | None = None


STATE = _State()


@hookimpl
def register_settings(register: Any) -> None:
    register(Settings)


@hookimpl
def on_startup(host: Any) -> None:
    STATE.host = host
    STATE.settings = host.plugin_settings(NAME)
    STATE.signals = Crossover(STATE.settings.fast, STATE.settings.slow)
    logger.info("{} watching {} {}", NAME, STATE.settings.full_symbol, STATE.settings.interval)


@hookimpl
async def on_bar(bar: Any) -> None:
    s = STATE.settings
    if STATE.signals is None or bar.full_symbol != s.full_symbol or bar.interval != s.interval or not bar.closed:
        return
    side = STATE.signals.update(bar.close)
    if side is None:
        return
    order = {"strategy": NAME, "full_symbol": bar.full_symbol, "side": side, "quantity": s.quantity,
             "type": "market", "price": bar.close}
    decision = await STATE.host.acheck_order(order, {"time": bar.close_datetime})
    if decision.accepted:
        STATE.host.publish(f"intent.{NAME}", order)
    else:
        logger.info("{} order rejected by {}: {}", NAME, decision.plugin, decision.reason)


@hookimpl
def on_news(item: Any) -> None:
    logger.debug("{} saw news: {}", NAME, getattr(item, "title", item))


@hookimpl
def on_shutdown(host: Any) -> None:
    STATE.signals = None
