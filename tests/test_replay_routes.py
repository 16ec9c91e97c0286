"""The replay API's route table (``aitrados.marketdata.replay_api.ROUTES``): which path reaches
which endpoint, and that every endpoint has its handler."""

from __future__ import annotations

import pytest

from aitrados.marketdata.replay_api import ROUTES, ReplayAPI, match_route


@pytest.mark.parametrize("path, endpoint", [
    ("stock/bars/US:AAPL/DAY/latest", "ohlc_latest"),
    ("STOCK/BARS/US:AAPL/1M/LATEST", "ohlc_latest"),
    ("crypto/bars/GLOBAL:BTCUSD/60M/from/2018-12-24/to/2018-12-31", "ohlc_history"),
    ("stock/reference/US:AAPL", "reference"),
    ("economic_calendar/event_list", "event_list"),
    ("economic_calendar/event", "event"),
    ("economic_calendar/latest_event_list", "latest_event_list"),
    ("economic_calendar/event_codes", "event_codes"),
    ("economic_calendar/event_codes/US", "event_codes"),
    ("holiday/list", "holiday_list"),
    ("holiday/holiday_codes/US", "holiday_codes"),
    ("news/list", "news_list"),
    ("news/LATEST", "news_latest"),
    ("server/address_info", "address_info"),
    ("option/search/stock/US:AAPL/call/moneyness/otm", "option_search"),
    ("option/expiration_date_list/stock/US:AAPL", "option_expiration_date_list"),
    ("stock/stock_corporate_action/list/US:AAPL", "stock_corporate_action_list"),
])
def test_path_reaches_its_endpoint(path: str, endpoint: str) -> None:
    assert match_route(path.split("/")) == endpoint


@pytest.mark.parametrize("path", [
    "", "stock/bars/US:AAPL/DAY", "stock/bars/US:AAPL/DAY/latest/x", "economic_calendar/event/US",
    "holiday/list/US", "holiday/holiday_codes", "news/first", "server/addresses",
    "option/search/stock/US:AAPL/call/money/otm", "stock/stock_corporate_action/all/US:AAPL",
])
def test_near_misses_match_nothing(path: str) -> None:
    assert match_route(path.split("/")) is None


def test_every_route_has_a_handler() -> None:
    for _, name in ROUTES:
        assert callable(getattr(ReplayAPI, "_" + name, None)), name
