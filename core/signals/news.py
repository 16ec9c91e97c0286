"""Breaking-news scoring: each news item scored for the symbols it names, as signals.

:class:`NewsScorer` asks an LLM (anything with ``complete(prompt) -> str``, or a callable, e.g.
the OpenAI-compatible :class:`aitrados.trading.llm.ChatClient`) for a JSON score when one is
given, and falls back to the VADER lexicon (the ``vaderSentiment`` package, plus a few market
words) when none is given
or its answer is missing, late or unreadable. Signals carry ``data.source`` = ``llm`` or
``lexicon``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from .record import Signal

MODULE = "news"

PROMPT = ("Score this market news for {symbols}. Answer only JSON: "
          '{{"score": <-1 bearish .. 1 bullish>, "confidence": <0..1>, "reason": "<one sentence>"}}.\n'
          "Title: {title}\nText: {text}")


#: Market words VADER's general-purpose lexicon scores as neutral (or not at all), with valences on
#: its -4..4 scale; they are added to (and override) its lexicon.
MARKET_LEXICON: dict[str, float] = {
    "rally": 2.0, "rallies": 2.0, "rebound": 2.0, "rebounds": 2.0, "surge": 2.0, "surges": 2.0, "soar": 2.5,
    "soars": 2.5, "record": 1.5, "gain": 1.5, "gains": 1.5, "beat": 1.5, "beats": 1.5, "upgrade": 1.5,
    "upgrades": 1.5, "outperform": 1.5, "bullish": 2.0,
    "sell-off": -2.5, "selloff": -2.5, "slide": -2.0, "slides": -2.0, "drop": -2.0, "drops": -2.0, "fell": -2.0,
    "fall": -1.5, "falls": -1.5, "plunge": -3.0, "plunges": -3.0, "tumble": -2.5, "tumbles": -2.5, "weighed": -1.5,
    "miss": -1.5, "misses": -1.5, "downgrade": -1.5, "downgrades": -1.5, "recall": -1.5, "recalls": -1.5,
    "bearish": -2.0, "lead": 0.0, "holiday": 0.0, "steady": 0.0,
}


def lexicon_analyzer() -> Any:
    """The VADER analyzer with :data:`MARKET_LEXICON` added; ImportError saying what to install when missing."""
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError as exc:
        raise ImportError("news scoring without an LLM needs vaderSentiment: pip install 'aitrados[signals]'") from exc
    analyzer = SentimentIntensityAnalyzer()
    analyzer.lexicon.update(MARKET_LEXICON)
    return analyzer


def parse_llm_score(text: str) -> tuple[float, float, str]:
    """``(score, confidence, reason)`` from a model's answer (a JSON object, possibly in prose); ValueError if none."""
    m = re.search(r"\{.*\}", text, re.S)
    if not m:
        raise ValueError(f"no JSON object in the model's answer {text[:80]!r}")
    obj = json.loads(m.group(0))
    score, conf = float(obj["score"]), float(obj.get("confidence", 0.5))
    if not (-1 <= score <= 1 and 0 <= conf <= 1):
        raise ValueError(f"score {score} or confidence {conf} out of range")
    return score, conf, str(obj.get("reason", ""))[:300]


class NewsScorer:
    """News items in, one ``sentiment`` signal per symbol the item names.

    :param model: an LLM (``complete(prompt)`` or callable); None = the lexicon only
    :param watch: symbols also scored when their ticker appears as a word in the title or text
    """

    def __init__(self, model: Any = None, watch: Iterable[str] = ()) -> None:
        self.model = model
        self.watch = [s.upper() for s in watch]
        self._vader: Any = None
        self.llm_failures = 0

    def symbols_of(self, item: Any) -> list[str]:
        """The symbols an item names: its own ``full_symbol`` and watched tickers found in its words."""
        out = [item.full_symbol.upper()] if item.full_symbol else []
        words = set(re.findall(r"[A-Z][A-Z0-9.]{0,9}", f"{item.title} {item.text_content or ''}"))
        out += [s for s in self.watch if s.rsplit(":", 1)[-1] in words and s not in out]
        return out

    def lexicon(self, title: str, text: str = "") -> tuple[float, float, str]:
        """VADER compound score, the headline weighing twice the body; confidence from the distance to neutral."""
        if self._vader is None:
            self._vader = lexicon_analyzer()
        t = float(self._vader.polarity_scores(title)["compound"])
        c = (2 * t + float(self._vader.polarity_scores(text)["compound"])) / 3 if text.strip() else t
        return round(c, 6), round(min(1.0, 0.3 + abs(c) / 2), 6), f"lexicon: headline {t:+.2f}, overall {c:+.2f}"

    def score(self, item: Any, symbols: list[str]) -> tuple[float, float, str, str]:
        """``(score, confidence, reason, source)`` of one item."""
        if self.model is not None:
            try:
                ask = getattr(self.model, "complete", None) or self.model
                answer = ask(PROMPT.format(symbols=", ".join(symbols) or "the market", title=item.title,
                                           text=item.text_content or ""))
                return (*parse_llm_score(str(answer)), "llm")
            except Exception:  # noqa: BLE001 - any model failure falls back to the lexicon (counted)
                self.llm_failures += 1
        return (*self.lexicon(item.title, item.text_content or ""), "lexicon")

    def update(self, item: Any) -> list[Signal]:
        """Score one news item; returns a signal per symbol it names (none when it names none)."""
        symbols = self.symbols_of(item)
        if not symbols:
            return []
        score, conf, reason, source = self.score(item, symbols)
        return [Signal(module=MODULE, full_symbol=fs, time=item.published_date, kind="sentiment", score=score,
                       confidence=conf, value=score, reason=reason,
                       data={"source": source, "title": item.title[:200], "publisher": item.publisher})
                for fs in symbols]


__all__ = ["MODULE", "NewsScorer", "lexicon_analyzer", "parse_llm_score"]
