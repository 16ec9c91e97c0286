"""Signals: typed records that analysis modules publish and strategies combine.

An analysis module (price action, macro surprises, news scoring, an LLM, a third-party plugin)
publishes :class:`Signal` records on ``signal.<module>.<full_symbol>``; a strategy subscribes to
``signal.`` (or one module's prefix) and never imports the producer, so any module can run
in-process or isolated, or be replaced by another publishing the same topics.
"""

from __future__ import annotations

from .record import SIGNAL_PREFIX, Signal, parse_signal_topic, signal_topic

__all__ = ["SIGNAL_PREFIX", "Signal", "parse_signal_topic", "signal_topic"]
