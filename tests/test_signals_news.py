"""Breaking-news scoring on the bundled 2018 news sample: the lexicon fallback, and an LLM through the
OpenAI-compatible client against a loopback chat server (falling back when it answers nonsense)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from aitrados.marketdata.loader import bundled_data_dir
from aitrados.marketdata.models import NewsItem
from aitrados.signals.news import NewsScorer, parse_llm_score
from aitrados.trading.llm import ChatClient, LLMSettings

from test_trading_llm import FakeOpenAI, server  # noqa: F401 - the loopback chat server fixture

pytest.importorskip("vaderSentiment")


def sample() -> list[tuple[NewsItem, str]]:
    rows = json.loads((bundled_data_dir() / "news" / "US_2018_sample.json").read_text())
    out = []
    for r in rows:
        item = NewsItem(dt.datetime.fromisoformat(r["published_date"]), r["title"], r["text_content"], r["publisher"],
                        f"{r['asset_name']}:{r['country_iso_code']}:{r['symbol']}".upper())
        out.append((item, r["sentiment_label"]))
    return out


def test_lexicon_scores_agree_with_the_samples_labels() -> None:
    scorer = NewsScorer(watch=["STOCK:US:AAPL"])
    for item, label in sample():
        (sig,) = scorer.update(item)
        sig.validate()
        assert sig.module == "news" and sig.full_symbol == item.full_symbol and sig.time == item.published_date
        assert sig.data["source"] == "lexicon"
        want = {"positive": 1, "negative": -1, "neutral": 0}[label]
        got = 0 if abs(sig.score) < 0.05 else (1 if sig.score > 0 else -1)
        assert got == want or (want == 0 and abs(sig.score) < 0.35), (item.title, label, sig.score)


def test_watched_tickers_named_in_an_item_get_a_signal_too() -> None:
    t = dt.datetime(2018, 5, 1, tzinfo=dt.timezone.utc)
    item = NewsItem(t, "AAPL beats estimates; TSLA misses", "", "wire", "STOCK:US:SPX")
    sigs = NewsScorer(watch=["STOCK:US:AAPL", "STOCK:US:TSLA", "STOCK:US:MSFT"]).update(item)
    assert [s.full_symbol for s in sigs] == ["STOCK:US:SPX", "STOCK:US:AAPL", "STOCK:US:TSLA"]
    assert NewsScorer().update(NewsItem(t, "Nothing named", "", "wire", None)) == []


def test_llm_scores_and_falls_back_to_the_lexicon(server: FakeOpenAI) -> None:  # noqa: F811
    client = ChatClient(LLMSettings(base_url=server.base_url, model="test-model"))
    server.content = 'Sure: {"score": -0.7, "confidence": 0.9, "reason": "a sharp sell-off"}'
    item, _ = sample()[0]
    (sig,) = NewsScorer(client).update(item)
    assert (sig.score, sig.confidence, sig.data["source"]) == (-0.7, 0.9, "llm")
    prompt = server.requests[-1]["body"]["messages"][-1]["content"]
    assert item.title in prompt and "STOCK:US:SPX" in prompt
    server.content = "I cannot say."
    scorer = NewsScorer(client)
    (sig,) = scorer.update(item)
    assert sig.data["source"] == "lexicon" and scorer.llm_failures == 1 and sig.score < 0


def test_parse_llm_score() -> None:
    assert parse_llm_score('{"score": 0.5}') == (0.5, 0.5, "")
    for bad in ("no json", '{"score": 2}', '{"confidence": 1}'):
        with pytest.raises((ValueError, KeyError)):
            parse_llm_score(bad)
