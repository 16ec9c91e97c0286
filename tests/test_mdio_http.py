"""HTTP side of the replay server through the real clients (sync and async) on loopback.

The oracle for data is the server's own store read directly (same process), and for aggregation
pandas resampling of the 1-minute bars; errors are checked by type and by what they name.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import logging
from collections.abc import Iterator

import httpx
import pandas as pd
import pytest
from loguru import logger

from aitrados.marketdata.errors import (
    AuthenticationError,
    BadIntervalError,
    BadParameterError,
    RateLimitError,
    ServerUnavailableError,
    UnknownSymbolError,
)
from aitrados.marketdata.http_client import AitradosHTTPClient, AsyncAitradosHTTPClient, RetryPolicy
from aitrados.marketdata.models import Bar
from aitrados.marketdata.replay_server import ReplayServerThread
from aitrados.marketdata.settings import MarketDataSettings

pytestmark = pytest.mark.timeout(60)

KEY = "replay-test-key-0123456789"
UTC = dt.timezone.utc
SETTINGS = MarketDataSettings(replay_symbols=["STOCK:US:AAPL", "CRYPTO:GLOBAL:BTCUSD"], replay_days=1,
                              replay_history_days=3)


@pytest.fixture(scope="module")
def srv() -> Iterator[ReplayServerThread]:
    with ReplayServerThread(SETTINGS, secret_key=KEY, autostart="manual") as s:
        yield s


@pytest.fixture
def client(srv: ReplayServerThread) -> Iterator[AitradosHTTPClient]:
    with AitradosHTTPClient(srv.http_url, KEY, retry=RetryPolicy(4, 10, 0.01, 0.05)) as c:
        yield c


def test_ohlc_latest_is_relative_to_the_replay_clock(srv: ReplayServerThread, client: AitradosHTTPClient) -> None:
    store = srv.server.store
    now = srv.server.clock.now()
    bars = client.ohlc_latest("crypto:GLOBAL:btcusd", "1m", limit=5)
    assert [b.interval for b in bars] == ["1M"] * 5
    assert bars[-1].close_datetime == now  # crypto trades every minute: the last closed bar ends at the clock
    assert all(b.close_datetime <= now for b in bars)
    expected = [b for b in store.minute_bars("CRYPTO:GLOBAL:BTCUSD") if b.close_datetime <= now][-5:]
    assert bars == expected


def test_ohlc_history_pages_equal_one_big_page(srv: ReplayServerThread, client: AitradosHTTPClient) -> None:
    start, end = "2018-12-21T14:30:00+00:00", "2018-12-21T21:00:00+00:00"
    before = srv.server.api.counts["ohlc_history"]
    paged = client.ohlc_history("STOCK:US:AAPL", "1M", start, end, limit=50)
    assert srv.server.api.counts["ohlc_history"] - before == 8  # 390 bars / 50 per page
    whole = client.ohlc_history("STOCK:US:AAPL", "1M", start, end, limit=1000)
    assert len(paged) == 390 and paged == whole
    desc = client.ohlc_history("STOCK:US:AAPL", "1M", start, end, limit=100, sort="desc")
    assert desc == whole[::-1]


def test_intraday_aggregation_matches_pandas(client: AitradosHTTPClient) -> None:
    m1 = client.ohlc_history("STOCK:US:AAPL", "1M", "2018-12-19", "2018-12-24")
    h1 = client.ohlc_history("STOCK:US:AAPL", "60M", "2018-12-19", "2018-12-24")
    df = pd.DataFrame({"open": [b.open for b in m1], "high": [b.high for b in m1], "low": [b.low for b in m1],
                       "close": [b.close for b in m1], "volume": [b.volume for b in m1]},
                      index=pd.DatetimeIndex([b.datetime for b in m1]).tz_convert("America/New_York"))
    # 60M bars anchored at the 09:30 session open
    rs = df.resample("60min", offset="30min").agg(
        {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}).dropna()
    assert len(rs) == len(h1) > 0
    for b, (ts, row) in zip(h1, rs.iterrows()):
        assert b.datetime == ts.tz_convert(UTC).to_pydatetime()
        assert (b.open, b.high, b.low, b.close) == (row.open, row.high, row.low, row.close)
        assert b.volume == pytest.approx(row.volume)


def test_daily_file_bars_and_weekly_aggregation(client: AitradosHTTPClient) -> None:
    days = client.ohlc_history("STOCK:US:SPX", "DAY", "2018-12-03", "2018-12-21")
    assert [b.datetime.date().isoformat() for b in days[:3]] == ["2018-12-03", "2018-12-04", "2018-12-06"]
    weeks = client.ohlc_history("stock:US:SPX", "week", "2018-12-03", "2018-12-21")
    first_week = [d for d in days if d.datetime.date() < dt.date(2018, 12, 10)]
    assert weeks[0].open == first_week[0].open and weeks[0].close == first_week[-1].close
    assert weeks[0].high == max(d.high for d in first_week)
    assert weeks[0].volume == pytest.approx(sum(d.volume for d in first_week))


def test_csv_format_and_raw_paths(srv: ReplayServerThread) -> None:
    base = srv.http_url
    q = {"limit": 3, "secret_key": KEY}
    j = httpx.get(f"{base}/api/v2/STOCK/bars/US:SPX/DAY/latest", params={**q, "format": "json"}).json()
    c = httpx.get(f"{base}/api/api/v2/stock/bars/US:SPX/day/latest", params={**q, "format": "csv"}).json()
    rows = list(csv.DictReader(io.StringIO(c["result"]["data"])))
    assert c["result"]["count"] == 3 == len(rows)
    assert [r["datetime"] for r in rows] == [r["datetime"] for r in j["result"]["data"]]
    assert [float(r["close"]) for r in rows] == [r["close"] for r in j["result"]["data"]]
    # raw '+' and ':' in the path, naive/space/date-only forms, is_eth as true/1
    forms = ["2018-12-21T14:30:00+00:00", "2018-12-21 14:30:00", "2018-12-21T14:30:00", "2018-12-21T09:30:00-05:00"]
    counts = set()
    for f in forms:
        r = httpx.get(f"{base}/api/v2/stock/bars/US:AAPL/1M/from/{f}/to/2018-12-21T15:30:00+00:00",
                      params={"limit": 1000, "is_eth": "true", "secret_key": KEY})
        assert r.status_code == 200, r.text
        data = r.json()["result"]["data"]
        assert data[0]["datetime"] == "2018-12-21T14:30:00+00:00"
        counts.add(len(data))
    assert counts == {61}
    bad = httpx.get(f"{base}/api/v2/stock/bars/US:AAPL/1M/latest", params={"is_eth": "maybe", "secret_key": KEY})
    assert bad.status_code == 400 and "is_eth" in bad.json()["message"]
    over = httpx.get(f"{base}/api/v2/stock/bars/US:AAPL/1M/latest", params={"limit": 1001, "secret_key": KEY})
    assert over.status_code == 400 and "limit" in over.json()["message"]


def test_news_calendar_holidays_reference(srv: ReplayServerThread, client: AitradosHTTPClient) -> None:
    store, now = srv.server.store, srv.server.clock.now()
    news = client.news_list("2018-01-01", "2019-01-01", limit=2)
    assert [n.title for n in news] == [n.title for n in store.news if n.published_date <= now]
    assert all(n.published_date <= now for n in news)
    spx = client.news_list("2018-01-01", "2019-01-01", full_symbol="stock:US:SPX")
    assert spx and all(n.full_symbol == "STOCK:US:SPX" for n in spx)
    assert client.news_latest(limit=1)[0] == news[-1]

    events = client.calendar_events(country_iso_code="US", limit=7)
    assert len(events) == len(store.events)
    past = [e for e in store.events if e.event_timestamp <= now]
    assert client.calendar_event(country_iso_code="US") == past[-1]
    hist = client.calendar_latest(country_iso_code="US", date_type="historical", limit=3)
    assert hist == past[-3:]
    upcoming = client.calendar_latest(country_iso_code="US", date_type="upcoming", limit=50)
    assert all(e.event_timestamp > now and e.actual_value is None for e in upcoming)  # outcome masked
    assert client.calendar_event_codes("US") == {e.event_code: e.event_name for e in store.events}

    hol = client.holidays("stock:US:*", from_date="2012-01-01", to_date="2012-12-31", limit=4)
    days = {h["calendar_date"]: h["holiday_code"] for h in hol}
    assert days["2012-10-29"] == "UNSCHEDULED_CLOSURE"  # hurricane Sandy, absent from the real index data
    assert days["2012-11-22"] == "THANKSGIVING_DAY" and days["2012-04-06"] == "GOOD_FRIDAY"
    assert client.holiday_codes("US")["CHRISTMAS_DAY"] == "Christmas Day"

    ref = client.reference("STOCK:US:AAPL")
    assert ref["time_zone"] == "America/New_York" and ref["daily_minute_count"] == 390
    assert client.address_info()["ws_url"] == srv.ws_url + "/ws"


def test_async_client_sends_the_same_requests(srv: ReplayServerThread, client: AitradosHTTPClient) -> None:
    async def run() -> tuple[list[Bar], list[Bar], dict]:
        async with AsyncAitradosHTTPClient(srv.http_url, KEY) as a:
            return (await a.ohlc_latest("STOCK:US:SPX", "MON", limit=12),
                    await a.ohlc_history("STOCK:US:AAPL", "5M", "2018-12-20", "2018-12-22", limit=17),
                    await a.holiday_codes("US"))

    mon, m5, codes = asyncio.run(run())
    assert mon == client.ohlc_latest("STOCK:US:SPX", "MON", limit=12)
    assert m5 == client.ohlc_history("STOCK:US:AAPL", "5M", "2018-12-20", "2018-12-22")
    assert codes == client.holiday_codes("US")


def test_typed_errors(srv: ReplayServerThread, client: AitradosHTTPClient) -> None:
    with pytest.raises(UnknownSymbolError) as e:
        client.ohlc_latest("STOCK:US:NOPE", "DAY")
    assert "STOCK:US:SPX" in e.value.available and "STOCK:US:SPX" in str(e.value)
    with pytest.raises(BadIntervalError) as e2:
        client.ohlc_latest("STOCK:US:SPX", "1M")  # daily file only
    assert e2.value.detail["available"] == ["DAY", "WEEK", "MON"]
    r = httpx.get(f"{srv.http_url}/api/v2/stock/bars/US:SPX/7M/latest", params={"secret_key": KEY}).json()
    assert r["code"] == 400 and "7M" in r["message"]
    with pytest.raises(ValueError, match="unknown interval"):
        client.ohlc_latest("STOCK:US:SPX", "7M")  # caught before sending
    with AitradosHTTPClient(srv.http_url, "wrong-key-000000") as bad:
        with pytest.raises(AuthenticationError) as e3:
            bad.ohlc_latest("STOCK:US:SPX", "DAY")
    assert "AITRADOS_SECRET_KEY" in str(e3.value) and "wrong-key-000000" not in str(e3.value)
    with pytest.raises(BadParameterError, match="moneyness"):
        client.call(client_call("option/search/stock/US:AAPL/call/moneyness/sideways"))


def client_call(path: str):  # a raw call for endpoints the client has no method for
    from aitrados.marketdata.http_client import Call
    return Call(path, (), lambda r: r)


def test_5xx_is_retried_then_succeeds_and_429_is_not(srv: ReplayServerThread, client: AitradosHTTPClient) -> None:
    s = srv.server
    before = s.api.counts["ohlc_latest"]
    sent = client.requests_sent
    srv.call(s.inject_failures, 2, 503, "ohlc_latest")
    bars = client.ohlc_latest("STOCK:US:SPX", "DAY", limit=4)
    assert len(bars) == 4
    assert client.requests_sent - sent == 3 and s.api.counts["ohlc_latest"] - before == 1
    srv.call(s.inject_failures, 2, 429, "ohlc_latest")
    with pytest.raises(RateLimitError) as e:
        client.ohlc_latest("STOCK:US:SPX", "DAY")
    assert e.value.retry_after == 1.0
    assert client.requests_sent - sent == 4  # one attempt, no retry
    with pytest.raises(RateLimitError):
        client.ohlc_latest("STOCK:US:SPX", "DAY")  # the second injected 429
    assert len(client.ohlc_latest("STOCK:US:SPX", "DAY", limit=2)) == 2  # then served again
    # the retry budget is bounded: attempts
    srv.call(s.inject_failures, 100, 500, "reference")
    with AitradosHTTPClient(srv.http_url, KEY, retry=RetryPolicy(3, 30, 0.01, 0.02)) as c3:
        with pytest.raises(ServerUnavailableError, match="gave up after 3 attempt"):
            c3.reference("STOCK:US:AAPL")
        assert c3.requests_sent == 3
    srv.call(lambda: s._failures.clear())


def test_connection_refused_is_bounded() -> None:
    with AitradosHTTPClient("http://127.0.0.1:9", KEY, retry=RetryPolicy(50, 0.5, 0.05, 0.1)) as c:
        with pytest.raises(ServerUnavailableError) as e:
            c.ohlc_latest("STOCK:US:SPX", "DAY")
        assert c.requests_sent < 50  # the total-time budget stopped it first
    assert KEY not in str(e.value)


def test_key_never_logged(srv: ReplayServerThread, caplog: pytest.LogCaptureFixture) -> None:
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="DEBUG")
    caplog.set_level(logging.DEBUG)
    try:
        srv.call(srv.server.inject_failures, 2, 500)
        with AitradosHTTPClient(srv.http_url, KEY, retry=RetryPolicy(5, 10, 0.01, 0.02)) as c:
            c.ohlc_history("STOCK:US:AAPL", "1M", "2018-12-20", "2018-12-21", limit=200)
            with pytest.raises(UnknownSymbolError) as e:
                c.ohlc_latest("STOCK:US:NOPE", "DAY")
        with AitradosHTTPClient("http://127.0.0.1:9", KEY, retry=RetryPolicy(2, 1, 0.01, 0.02)) as c2:
            with pytest.raises(ServerUnavailableError) as e2:
                c2.news_latest()
    finally:
        logger.remove(sink)
    text = "\n".join(lines) + "\n".join(r.getMessage() for r in caplog.records)
    assert "retry" in text and "HTTP Request" in text  # the capture saw both loggers
    assert KEY not in text and KEY not in str(e.value) and KEY not in str(e2.value)
    assert "secret_key=***" in text  # httpx's request line is scrubbed, not dropped


def test_user_csv_with_bad_rows_is_served_and_reported(tmp_path) -> None:
    f = tmp_path / "STOCK_US_ACME_DAY.csv"
    f.write_text("Date,Open,High,Low,Close,Adj Close,Volume\n"
                 "12/3/2018,10,11,9,10.5,10.5,100\n"
                 "12/4/2018,10.5,oops,9,10,10,100\n"          # line 3: malformed
                 "12/5/2018,10,12,9,11,11,100\n"
                 "12/5/2018,10,12,9,11,11,100\n"              # line 5: duplicate
                 "12/4/2018,10,12,9,11,11,100\n"              # line 6: out of order
                 "12/14/2018,11,12,10,11.5,11.5,100\n")       # line 7: gap (reported, served)
    st = MarketDataSettings(replay_symbols=[], replay_bar_files=[str(f)], replay_bundled=False)
    with ReplayServerThread(st, autostart="manual") as s, AitradosHTTPClient(s.http_url, "any") as c:
        bars = c.ohlc_history("STOCK:US:ACME", "DAY", "2018-12-01", "2018-12-31")
        assert [b.datetime.day for b in bars] == [3, 5, 14]
        where = {(i.line, i.kind) for i in s.server.store.issues}
        assert {(3, "malformed"), (5, "duplicate"), (6, "out_of_order"), (7, "gap")} <= where
        assert all(i.file == str(f) for i in s.server.store.issues)
        state = httpx.get(f"{s.http_url}/replay/state").json()["result"]
        assert state["data_issues"] == len(s.server.store.issues)
        assert state["requests"] == {"ohlc_history": 1}


def test_server_rate_limit_answers_429() -> None:
    st = MarketDataSettings(replay_symbols=[], replay_rate_limit_per_second=1.0)
    with ReplayServerThread(st, autostart="manual") as s, \
            AitradosHTTPClient(s.http_url, "any", retry=RetryPolicy(5, 10, 0.01, 0.02)) as c:
        c.holiday_codes("US")  # uses the one token
        with pytest.raises(RateLimitError, match="rate limit"):
            c.holiday_codes("US")
        assert c.requests_sent == 2  # the 429 was not retried
        assert s.server.api.counts["holiday_codes"] == 1


# Request targets exactly as the official aitrados-api client sends them (protocol sheet §5),
# with the key replaced and symbols the replay data has.
OFFICIAL_TARGETS = [
    "/api/v2/crypto/bars/GLOBAL:BTCUSD/1M/latest?format=csv&limit=150&is_eth=0",
    "/api/v2/crypto/bars/GLOBAL:BTCUSD/1m/latest?format=json&limit=2&is_eth=1",
    "/api/v2/crypto/bars/GLOBAL:BTCUSD/60M/from/2018-12-20T00:00:00+00:00/to/2018-12-23T23:59:59+00:00?format=json&limit=30&is_eth=0",
    "/api/v2/stock/bars/US:SPX/DAY/from/2018-07-18T00:00:00/to/2018-09-05T00:00:00?format=csv&sort=desc&limit=5&is_eth=0",
    "/api/v2/stock/reference/US:AAPL",
    "/api/v2/economic_calendar/event_list?country_iso_code=US&limit=5&format=json",
    "/api/v2/economic_calendar/event_list?country_iso_code=US&event_code=X&impact=high&source_id=s&from_date=2024-01-01+00%3A00%3A00&to_date=2024-02-01+10%3A00%3A00%2B00%3A00&sort=desc&limit=5&format=csv",
    "/api/v2/economic_calendar/event?country_iso_code=US&event_code=CPI_YOY&from_date=2018-01-01+00%3A00%3A00",
    "/api/v2/economic_calendar/event",
    "/api/v2/economic_calendar/event_codes/US",
    "/api/v2/economic_calendar/latest_event_list?country_iso_code=us&date_type=upcoming&limit=5&format=json",
    "/api/v2/holiday/list?full_symbol=stock%3AUS%3A%2A&from_date=2017-01-01+00%3A00%3A00&to_date=2018-12-31+00%3A00%3A00&sort=asc&limit=100&format=json",
    "/api/v2/holiday/holiday_codes/US",
    "/api/v2/news/list?from_date=2018-07-01+00%3A00%3A00&to_date=2018-12-31+00%3A00%3A00&full_symbol=stock%3AUS%3ASPX&sort=asc&limit=100",
    "/api/v2/news/latest?full_symbol=stock%3AUS%3ASPX&limit=5",
    "/api/v2/news/latest?limit=5",
    "/api/v2/server/address_info",
    "/api/v2/forex/bars/GLOBAL:EURUSD/5M/latest?format=json&limit=3&is_eth=0",
    "/api/v2/CRYPTO/bars/GLOBAL:BTCUSD/1M/latest?format=csv&limit=150&is_eth=0",
]


def test_official_client_requests_are_answered(tmp_path) -> None:
    st = MarketDataSettings(replay_symbols=["CRYPTO:GLOBAL:BTCUSD", "FOREX:GLOBAL:EURUSD", "STOCK:US:AAPL"],
                            replay_days=1)
    with ReplayServerThread(st, secret_key=KEY, autostart="manual") as s, httpx.Client() as h:
        for target in OFFICIAL_TARGETS:
            r = h.get(f"{s.http_url}{target}&secret_key={KEY}" if "?" in target else f"{s.http_url}{target}?secret_key={KEY}")
            body = r.json()
            assert r.status_code == 200 and body["status"] == "ok" and body["code"] == 200, (target, body)
            assert set(body) == {"status", "code", "message", "reference", "result"}
            if "/bars/" in target:
                data = body["result"]["data"]
                n = data.count("\n") - 1 if isinstance(data, str) else len(data)
                assert n == body["result"]["count"] > 0, target
        r = h.get(f"{s.http_url}/api/v2/option/expiration_date_list/stock/US:SPY?secret_key={KEY}").json()
        assert r["code"] == 200 and r["result"] == []  # the sample chains are AAPL's and TSLA's
        paged = h.get(f"{s.http_url}{OFFICIAL_TARGETS[2]}&secret_key={KEY}").json()["result"]
        assert paged["next_page_key"] and f"secret_key={KEY}" in paged["next_page_url"]  # as the cloud's
        nxt = h.get(f"{s.http_url}{OFFICIAL_TARGETS[2]}&next_page_key={paged['next_page_key']}&secret_key={KEY}").json()
        assert nxt["result"]["data"][0]["datetime"] > paged["data"][-1]["datetime"]


def test_a_forged_next_page_key_never_reaches_past_the_clock(srv: ReplayServerThread) -> None:
    from aitrados.marketdata.replay_api import encode_page_key

    now = srv.server.clock.now()
    later = now + dt.timedelta(days=30)
    base = (f"{srv.http_url}/api/v2/crypto/bars/GLOBAL:BTCUSD/1M/from/{(now - dt.timedelta(hours=2)).isoformat()}"
            f"/to/{later.isoformat()}?format=json&limit=1000&secret_key={KEY}")
    with httpx.Client() as h:
        honest = h.get(base).json()["result"]["data"]
        forged = h.get(f"{base}&next_page_key={encode_page_key(0, later)}").json()
    assert forged["status"] == "ok", forged
    bars = forged["result"]["data"]
    assert bars and honest, "the window must hold bars before the clock for this test to mean anything"
    assert max(b["datetime"] for b in bars) == max(b["datetime"] for b in honest)
    assert all(dt.datetime.fromisoformat(b["datetime"]) < now for b in bars)
