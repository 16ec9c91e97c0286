"""SMA crossover whose entries a language model must approve.

Same rule as :mod:`aitrados_strategies.sma_cross`; every new entry signal is put to a
:class:`~aitrados.trading.llm.Gate` with the last ``context_bars`` bars and the news items
received in the last ``news_lookback``. The model answers approve or veto. When it is
unreachable, slow (beyond the gate's timeout), erroring or unclear, the stated fallback
applies: **veto** by default (``fallback_approve=True`` approves instead). Exits are never
gated. A vetoed signal is not asked about again until the signal changes. The call runs in a
worker thread with a deadline, so the strategy waits at most ``timeout`` seconds and the
caller's event loop never blocks on it (the host runs strategy callbacks off its loop).

As a plugin (entry point ``llm_gated``) it registers one ``LlmGated`` configured by
``[plugins.llm_gated]`` (:class:`LlmGatedSettings`). The model is picked when the host
starts: ``llm_model`` names one registered through ``register_llm_models`` (for example
``openai`` from the ``openai_llm`` plugin, loaded in the same process); unset, it is a
``ChatClient`` on the ``trading.llm`` settings. Until then, and when the named model is
missing, every signal gets the fallback.
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from typing import Any, Literal

from loguru import logger
from pydantic import Field, model_validator

from aitrados import hookimpl
from aitrados.marketdata.models import Bar
from aitrados.trading.llm import ChatClient, Gate, GateDecision, LLMError, LLMSettings

from ._settings import SymbolStrategySettings
from .sma_cross import SmaCross

__all__ = ["LlmGated", "LlmGatedSettings", "UnresolvedModel"]


class LlmGated(SmaCross):
    """SMA cross with model-approved entries; see the module docstring."""

    #: it waits on a model: the host runs its callbacks off the event loop
    blocking = True

    name = "llm_gated"

    def __init__(
        self,
        full_symbol: str = "STOCK:US:SPX",
        interval: str = "DAY",
        fast: int = 10,
        slow: int = 30,
        size: float | str | None = None,
        model: Any = None,
        llm: LLMSettings | None = None,
        fallback_approve: bool = False,
        timeout: float | None = None,
        context_bars: int = 20,
        news_lookback: dt.timedelta = dt.timedelta(days=3),
        **kwargs: Any,
    ) -> None:
        super().__init__(full_symbol=full_symbol, interval=interval, fast=fast, slow=slow, size=size, **kwargs)
        self.gate = Gate(model if model is not None else ChatClient(llm), fallback=fallback_approve, timeout=timeout)
        self.recent: deque[Bar] = deque(maxlen=context_bars)
        self.news: deque[Any] = deque(maxlen=50)
        self.news_lookback = news_lookback
        self.decisions: list[tuple[dt.datetime, float, GateDecision]] = []
        self._vetoed: int | None = None

    def on_news(self, item: Any) -> None:
        """Keep recent news items for the model's context."""
        if not getattr(item, "full_symbol", None) or item.full_symbol == self.full_symbol:
            self.news.append(item)

    def on_bar(self, bar: Bar) -> None:
        """Record the bar for context, then run the crossover rule (entries gated)."""
        self.recent.append(bar)
        super().on_bar(bar)
        if self._vetoed is not None and self.slow.ready and self.signal() != self._vetoed:
            self._vetoed = None

    def approve_entry(self, bar: Bar, target: int) -> bool:
        """Ask the model once per signal; a veto holds until the signal changes."""
        if self._vetoed == target:
            return False
        side = "BUY (go long)" if target > 0 else "SELL SHORT"
        since = bar.close_datetime - self.news_lookback
        news = [n for n in self.news if since <= n.published_date <= bar.close_datetime]
        amount = f"{self.size:g}" if isinstance(self.size, float) else f"{self.size} of equity in"
        signal = (
            f"{side} {amount} {self.full_symbol} at the next open; SMA{self.fast.period}="
            f"{self.fast.value:.2f} crossed SMA{self.slow.period}={self.slow.value:.2f} on {bar.close_datetime:%Y-%m-%d}"
        )
        decision = self.gate.decide(signal, list(self.recent), news)
        self.decisions.append((bar.close_datetime, target, decision))
        if not decision.approved:
            self._vetoed = target
        return decision.approved


# ---------------------------------------------------------------------- the plugin (entry point `llm_gated`)


class LlmGatedSettings(SymbolStrategySettings):
    """``[plugins.llm_gated]``: the crossover, the model to ask and the fallback."""

    fast: int = Field(10, gt=0, description="fast SMA period, bars")
    slow: int = Field(30, gt=0, description="slow SMA period, bars; above fast")
    llm_model: str | None = Field(None, description="a model registered by a plugin (e.g. 'openai'); "
                                                    "unset = a ChatClient on the trading.llm settings")
    fallback_approve: bool = Field(False, description="approve when the model cannot answer (default: veto)")
    timeout: float = Field(5.0, gt=0, description="seconds the strategy waits for the model per signal")
    context_bars: int = Field(20, gt=0, description="recent bars shown to the model")
    news_lookback: dt.timedelta = Field(dt.timedelta(days=3), description="news age shown to the model")
    entry: Literal["cross", "state"] = Field("cross", description="enter on a crossover, or hold the averages' side")

    @model_validator(mode="after")
    def _periods(self) -> LlmGatedSettings:
        if self.fast >= self.slow:
            raise ValueError(f"fast ({self.fast}) must be below slow ({self.slow})")
        return self


class UnresolvedModel:
    """Stands in for the model until the host starts: every call fails, so the gate falls back."""

    def __init__(self, name: str | None) -> None:
        self.name = name

    def complete(self, prompt: str) -> str:
        """Raise ``LLMError`` saying which model is missing."""
        raise LLMError(f"LLM model {self.name or 'trading.llm'!r} is not available to llm_gated "
                       "(load a plugin that registers it, in the same process)")


#: Strategies registered by the last load of this plugin, whose model ``on_startup`` resolves.
_REGISTERED: list[tuple[LlmGated, str | None]] = []


@hookimpl
def register_settings(register: Any) -> None:
    """Declare ``[plugins.llm_gated]``."""
    register(LlmGatedSettings)


@hookimpl
def register_strategies(register: Any) -> None:
    """Register the gated crossover built from the plugin's settings (its model is set at startup)."""
    cfg: LlmGatedSettings = register.settings
    params = cfg.model_dump(exclude={"llm_model"})
    strategy = LlmGated(model=UnresolvedModel(cfg.llm_model), **params)
    _REGISTERED[:] = [(strategy, cfg.llm_model)]
    register(strategy)


@hookimpl
def on_startup(host: Any) -> None:
    """Give the gate its model: the registered one named ``llm_model``, else a ChatClient on ``trading.llm``."""
    for strategy, name in _REGISTERED:
        if name is None:
            trading = getattr(host.settings, "trading", None)
            strategy.gate.model = ChatClient(getattr(trading, "llm", None) or LLMSettings())
            continue
        try:
            strategy.gate.model = host.llm(name)
        except Exception as exc:
            logger.error("llm_gated: {}; every signal gets the fallback ({})", exc,
                         "approve" if strategy.gate.fallback else "veto")
