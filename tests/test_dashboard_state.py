"""DashboardState without I/O: coalescing, bounds, bad input, equity from the bus."""

from __future__ import annotations

import datetime as dt

import pytest

from aitrados.dashboard.state import DashboardState, epoch

T0 = dt.datetime(2024, 1, 2, 14, 30, tzinfo=dt.timezone.utc)
SYM = "STOCK:US:AAPL"


def bar(i: int, close: float, closed: bool = True) -> dict:
    t = T0 + dt.timedelta(minutes=i)
    return {"full_symbol": SYM, "interval": "1M", "datetime": t, "close_datetime": t + dt.timedelta(minutes=1),
            "open": close, "high": close + 1, "low": close - 1, "close": close, "volume": 1.0, "closed": closed}


def test_updates_of_one_candle_within_a_frame_reach_the_page_once_with_the_last_values() -> None:
    s = DashboardState()
    for px in range(100, 200):
        s.feed(f"ohlc.{SYM}.1M", bar(0, float(px), closed=False))
    d = s.take_delta()
    assert d is not None
    (c,) = d["charts"][f"{SYM} 1M"]["candles"]
    assert c["close"] == 199.0 and c["time"] == T0.timestamp()
    assert s.take_delta() is None  # nothing new: no frame


def test_histories_are_bounded_and_older_candles_than_the_window_are_ignored() -> None:
    s = DashboardState(max_candles=5, max_items=3)
    for i in range(10):
        s.feed(f"ohlc.{SYM}.1M", bar(i, 100.0 + i))
    s.feed(f"ohlc.{SYM}.1M", bar(0, 1.0))  # older than the kept window
    snap = s.snapshot()["charts"][f"{SYM} 1M"]
    assert [c["close"] for c in snap["candles"]] == [105.0, 106.0, 107.0, 108.0, 109.0]
    for i in range(5):
        s.feed("news.GENERAL", {"published_date": T0, "title": f"n{i}"})
    assert [n["title"] for n in s.snapshot()["news"]] == ["n2", "n3", "n4"]


@pytest.mark.parametrize("topic,data", [("ohlc.X.1M", {"bad": 1}), ("fill.X", None), ("replay.step", "x"),
                                        ("something.else", {}), ("ohlc.X.1M", {**bar(0, 1.0), "datetime": "never"}),
                                        ("ohlc.X.1M", bar(0, float("nan"))),
                                        ("fill.X", {"full_symbol": SYM, "side": "buy", "quantity": float("inf"),
                                                    "price": 1.0, "datetime": T0})])
def test_bad_messages_are_counted_and_change_nothing(topic: str, data: object) -> None:
    s = DashboardState()
    s.feed(topic, data)
    assert s.counts["ignored"] == 1 and s.series == {} and not s.fills


def test_fills_mark_the_candle_they_happened_in_and_equity_follows_the_bus() -> None:
    s = DashboardState()
    s.set_status({"account": {"initial_cash": 1000.0}})
    for i in range(3):
        s.feed(f"ohlc.{SYM}.1M", bar(i, 10.0 + i))
    fill_t = T0 + dt.timedelta(minutes=1, seconds=30)
    s.feed(f"fill.{SYM}", {"full_symbol": SYM, "side": "buy", "quantity": 5.0, "price": 11.0, "commission": 1.0,
                           "datetime": fill_t, "strategy": "s", "order_id": 1})
    s.feed(f"ohlc.{SYM}.1M", bar(3, 20.0))
    f = s.snapshot()["fills"][0]
    assert f["bar_time"] == {f"{SYM} 1M": (T0 + dt.timedelta(minutes=1)).timestamp()}
    # 1000 - 5 * 11 - 1 + 5 * 20
    assert s.equity_now() == pytest.approx(1044.0)
    assert s.equity[-1] == {"time": epoch(T0 + dt.timedelta(minutes=4)), "equity": pytest.approx(1044.0),
                            "drawdown": 0.0}
    s.feed(f"ohlc.{SYM}.1M", bar(4, 0.0))
    assert s.equity[-1]["drawdown"] == pytest.approx(1 - 944.0 / 1044.0)


def test_equity_points_before_the_initial_cash_is_known_are_priced_when_it_arrives() -> None:
    s = DashboardState()
    s.feed(f"ohlc.{SYM}.1M", bar(0, 10.0))
    s.feed(f"fill.{SYM}", {"full_symbol": SYM, "side": "sell", "quantity": 2.0, "price": 10.0,
                           "datetime": T0 + dt.timedelta(minutes=1)})
    s.feed(f"ohlc.{SYM}.1M", bar(1, 15.0))
    assert not s.equity and s.equity_now() is None
    s.set_status({"account": {"initial_cash": 100.0}})
    assert [p["equity"] for p in s.equity] == [100.0, 100.0 + 20.0 - 30.0]

