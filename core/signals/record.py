"""The signal record and its topic grammar ``signal.<module>.<full_symbol>``."""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any

import msgspec

from ..events import ROOTS, Kind, build_topic, parse_topic

#: First segment of every signal topic.
SIGNAL_PREFIX = ROOTS[Kind.SIGNAL]

_MODULE = re.compile(r"^[a-z][a-z0-9_]{0,40}$")
_SYMBOL = re.compile(r"^[A-Z0-9]+:[A-Z0-9]+:[A-Z0-9._\-]+$")


class Signal(msgspec.Struct, frozen=True, kw_only=True):
    """One analysis result about one symbol at one time.

    :ivar module: the producing module (``price_action``, ``macro``, ``news`` ...): the topic's second segment
    :ivar full_symbol: ``ASSET:COUNTRY:SYMBOL`` the signal is about (``*`` only for market-wide signals)
    :ivar time: data time the signal is valid from (the bar, news item or event that caused it), UTC
    :ivar kind: what was seen, e.g. ``pivot_high``, ``breakout_up``, ``engulfing_bull``, ``surprise``
    :ivar score: direction and strength in ``[-1, 1]`` (positive = bullish)
    :ivar confidence: how much to trust it, in ``[0, 1]``
    :ivar value: the number the signal is about (a price level, a normalised surprise...), if any
    :ivar reason: one human sentence saying why
    :ivar data: extra facts (JSON-ready)
    """

    module: str
    full_symbol: str
    time: dt.datetime
    kind: str
    score: float
    confidence: float
    value: float | None = None
    reason: str = ""
    data: dict[str, Any] = {}

    def validate(self) -> Signal:
        """Raise ValueError saying what is wrong; returns self when the record is well formed."""
        if not _MODULE.match(self.module):
            raise ValueError(f"signal module {self.module!r}: use lower-case letters, digits and _ (e.g. price_action)")
        if self.full_symbol != "*" and not _SYMBOL.match(self.full_symbol):
            raise ValueError(f"signal full_symbol {self.full_symbol!r} is not ASSET:COUNTRY:SYMBOL in upper case")
        if self.time.tzinfo is None:
            raise ValueError("signal time must be timezone-aware (UTC)")
        if not (-1.0 <= self.score <= 1.0) or not (0.0 <= self.confidence <= 1.0):
            raise ValueError(f"signal score {self.score} must be in [-1, 1] and confidence {self.confidence} in [0, 1]")
        if self.value is not None and not math.isfinite(self.value):
            raise ValueError(f"signal value {self.value} is not a finite number")
        return self

    @property
    def topic(self) -> str:
        """``signal.<module>.<full_symbol>``."""
        return signal_topic(self.module, self.full_symbol)


def signal_topic(module: str, full_symbol: str) -> str:
    """The topic a module's signals about *full_symbol* are published on (``aitrados.events`` grammar)."""
    if not _MODULE.match(module):
        raise ValueError(f"signal module {module!r}: use lower-case letters, digits and _ (e.g. price_action)")
    return build_topic(Kind.SIGNAL, full_symbol, module)


def parse_signal_topic(topic: str) -> tuple[str, str]:
    """``(module, full_symbol)`` of a signal topic; ValueError when it is not one."""
    try:
        t = parse_topic(topic)
    except ValueError:
        t = None
    if t is None or t.kind is not Kind.SIGNAL or not _MODULE.match(t.detail):
        raise ValueError(f"{topic!r} is not a signal topic (signal.<module>.<full_symbol>)")
    return t.detail, t.subject


__all__ = ["SIGNAL_PREFIX", "Signal", "parse_signal_topic", "signal_topic"]
