"""SMA crossover whose entries a language model must approve.

Same rule as :mod:`aitrados_strategies.sma_cross`; every new entry signal is put to a
:class:`~aitrados.trading.llm.Gate` with the last ``context_bars`` bars and the news items
received in the last ``news_lookback``. The model answers approve or veto. When it is
unreachable, slow (beyond the gate's timeout), erroring or unclear, the stated fallback
applies: **veto** by default (``fallback_approve=True`` approves instead). Exits are never
gated. A vetoed signal is not asked about again until the signal changes. The call runs in a
worker thread with a deadline, so the strategy waits at most ``timeout`` seconds and the
caller's event loop never blocks on it (the host runs strategy callbacks off its loop).
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from typing import Any

from aitrados.marketdata.models import Bar
from aitrados.trading.llm import ChatClient, Gate, GateDecision, LLMSettings

from .sma_cross import SmaCross

__all__ = ["LlmGated"]


class LlmGated(SmaCross):
    """SMA cross with model-approved entries; see the module docstring."""

    name = "llm_gated"

    def __init__(
        self,
        full_symbol: str = "STOCK:US:SPX",
        interval: str = "DAY",
        fast: int = 10,
        slow: int = 30,
        quantity: float = 10.0,
        model: Any = None,
        llm: LLMSettings | None = None,
        fallback_approve: bool = False,
        timeout: float | None = None,
        context_bars: int = 20,
        news_lookback: dt.timedelta = dt.timedelta(days=3),
        **kwargs: Any,
    ) -> None:
        super().__init__(full_symbol=full_symbol, interval=interval, fast=fast, slow=slow, quantity=quantity, **kwargs)
        self.gate = Gate(model if model is not None else ChatClient(llm), fallback=fallback_approve, timeout=timeout)
        self.recent: deque[Bar] = deque(maxlen=context_bars)
        self.news: deque[Any] = deque(maxlen=50)
        self.news_lookback = news_lookback
        self.decisions: list[tuple[dt.datetime, float, GateDecision]] = []
        self._vetoed: float | None = None

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

    def approve_entry(self, bar: Bar, target: float) -> bool:
        """Ask the model once per signal; a veto holds until the signal changes."""
        if self._vetoed == target:
            return False
        side = "BUY (go long)" if target > 0 else "SELL SHORT"
        since = bar.close_datetime - self.news_lookback
        news = [n for n in self.news if since <= n.published_date <= bar.close_datetime]
        signal = (
            f"{side} {abs(target):g} {self.full_symbol} at the next open; SMA{self.fast.period}="
            f"{self.fast.value:.2f} crossed SMA{self.slow.period}={self.slow.value:.2f} on {bar.close_datetime:%Y-%m-%d}"
        )
        decision = self.gate.decide(signal, list(self.recent), news)
        self.decisions.append((bar.close_datetime, target, decision))
        if not decision.approved:
            self._vetoed = target
        return decision.approved
