"""The ``breaking_news`` plugin: every news item scored for the symbols it names, published on
``signal.news.<full_symbol>`` as soon as it arrives.

With ``llm_model`` set to a model registered through ``register_llm_models`` (e.g. ``openai``
from the ``openai_llm`` plugin, in the same process) the model scores each item; without one,
or when it fails, the VADER lexicon does (``pip install 'aitrados[signals]'``).
"""

from __future__ import annotations

from typing import Any

from loguru import logger
from pydantic import BaseModel, ConfigDict, Field

from aitrados import hookimpl
from aitrados.signals.news import NewsScorer
from aitrados.signals.publish import SignalModule

__all__ = ["BreakingNewsSettings"]


class BreakingNewsSettings(BaseModel):
    """``[plugins.breaking_news]``."""

    model_config = ConfigDict(extra="forbid")

    llm_model: str | None = Field(None, description="registered LLM model to score with (None = the lexicon)")
    watch: list[str] = Field(default_factory=list, description="symbols also scored when their ticker is named")


MODULE = SignalModule()


@hookimpl
def register_settings(register: Any) -> None:
    """Declare ``[plugins.breaking_news]``."""
    register(BreakingNewsSettings)


@hookimpl
def on_startup(host: Any) -> None:
    """Resolve the model (if any) and load the lexicon once."""
    cfg: BreakingNewsSettings = host.plugin_settings("breaking_news") or BreakingNewsSettings()
    model = host.llm(cfg.llm_model) if cfg.llm_model else None
    scorer = NewsScorer(model, cfg.watch)
    scorer.lexicon("warm up")  # fails here, with the install hint, rather than on the first item
    logger.info("breaking_news: scoring with {}", f"LLM model {cfg.llm_model!r}" if model else "the VADER lexicon")
    MODULE.start(host, scorer)


@hookimpl
def on_news(item: Any) -> None:
    """Score one news item and publish a signal per symbol it names."""
    if not isinstance(item, dict):
        MODULE.feed(lambda scorer: scorer.update(item))
