"""The replay server's answers to the official DatasetClient for reference data (protocol §1.5, §1.7):
the full reference record, exchange codes, option search and expiry list, corporate actions, and
next_page_url with the secret key, as the cloud gives them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

pytest.importorskip("aitrados_api")

from aitrados.marketdata.replay_server import ReplayServerThread
from aitrados.marketdata.settings import MarketDataSettings

pytestmark = pytest.mark.timeout(60)
KEY = "replay-compat-key-0123456789"
SETTINGS = MarketDataSettings(replay_symbols=["STOCK:US:AAPL", "CRYPTO:GLOBAL:BTCUSD"], replay_days=1,
                              replay_history_days=3)
REFERENCE_FIELDS = ("tick_size", "lot_size", "price_precision", "quantity_precision", "instrument_id", "asset_id",
                    "listing_date", "contract_value", "contract_type", "trading_codes", "is_indices",
                    "parent_schema_instrument_id", "min_initial_open_quantity")


@pytest.fixture(scope="module")
def srv() -> Iterator[ReplayServerThread]:
    with ReplayServerThread(SETTINGS, secret_key=KEY, autostart="manual") as s:
        yield s


@pytest.fixture(scope="module")
def client(srv: ReplayServerThread):
    from aitrados_api import ClientConfig, DatasetClient

    c = DatasetClient(config=ClientConfig(secret_key=KEY, base_url=srv.http_url))
    yield c
    c.close()


def test_reference_has_the_13_documented_fields_and_an_exchange_code(client) -> None:
    aapl = client.reference.reference("stock", "US:AAPL").result
    missing = [f for f in REFERENCE_FIELDS if f not in aapl]
    assert not missing, missing
    assert aapl["exchange"] == "XNAS" and aapl["price_precision"] == 2 and aapl["tick_size"] == 0.01
    assert aapl["contract_value"] == "1" and aapl["trading_codes"] == ["AAPL"] and aapl["is_indices"] is False
    dt.date.fromisoformat(aapl["listing_date"])
    spx = client.reference.reference("stock", "US:SPX").result
    assert spx["exchange"] == "XNYS" and spx["is_indices"] is True and spx["listing_date"] == "1999-01-04"
    btc = client.reference.reference("crypto", "GLOBAL:BTCUSD").result
    assert btc["exchange"] == "GLOBAL" and btc["quantity_precision"] == 8
    assert aapl["instrument_id"] != btc["instrument_id"]


def test_options_search_and_expiration_list_come_from_the_sample_file(client, srv: ReplayServerThread) -> None:
    exps = client.reference.options_expiration_date_list("stock", "US:AAPL").result
    now = srv.server.clock.now()
    assert exps and [e["expiration_date"] for e in exps] == sorted(e["expiration_date"] for e in exps)
    assert all(dt.datetime.fromisoformat(e["expiration_datetime"]) > now for e in exps)
    page = next(iter(client.reference.search_option("stock", "US:AAPL", "call", "in_the_money",
                                                      ref_asset_price=155.0, limit=3)))
    res = page.result
    assert res["count"] == 3 and res["next_page_key"]
    assert "secret_key" in parse_qs(urlsplit(res["next_page_url"]).query)
    for key, rows in res["data"].items():
        assert key in res["expiration_datetimes"] and key.endswith("Z")
        assert all(r["option_type"] == "call" and r["strike_price"] < 155.0 for r in rows)
    puts = next(iter(client.reference.search_option("stock", "US:AAPL", "put", "out_of_the_money",
                                                      ref_asset_price=155.0, limit=100))).result
    assert puts["count"] > 0 and all(r["strike_price"] < 155.0 for rows in puts["data"].values() for r in rows)


def test_corporate_actions_are_listed_as_declared_by_the_clock(client) -> None:
    page = next(iter(client.reference.stock_corporate_action_list("US:AAPL", "2010-01-01", limit=10)))
    rows = page.result["data"]
    assert [r["action_type"] for r in rows] == ["split", "dividend", "dividend"]  # 2019-02 not yet declared
    assert rows[0]["adjustment_factor"] == "0.14285714" and rows[0]["exchange"] == "XNAS"
    divs = next(iter(client.reference.stock_corporate_action_list("US:AAPL", "2018-01-01", action_type="dividend")))
    assert all(r["action_type"] == "dividend" for r in divs.result["data"])


def test_next_page_url_keeps_the_secret_key_like_the_cloud(client) -> None:
    page = next(iter(client.news.news_list("2018-01-01", "2018-12-31", limit=1)))
    url = page.result["next_page_url"]
    assert url and parse_qs(urlsplit(url).query)["secret_key"] == [KEY]
