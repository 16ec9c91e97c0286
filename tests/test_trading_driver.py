"""The strategy driver alone: who gets which event, in which order, and what re-entry is allowed."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from aitrados.marketdata.align import Snapshot
from aitrados.marketdata.models import Bar, NewsItem
from aitrados.trading.driver import MAX_ROUNDS, StrategyDriver, topics_for
from aitrados.trading.orders import Event, Fill, Order, OrderIntent
from aitrados.trading.strategy import Cancel, Strategy

UTC = dt.timezone.utc
T0 = dt.datetime(2024, 1, 2, 21, tzinfo=UTC)
SPX, IXIC = "STOCK:US:SPX", "STOCK:US:IXIC"


def bar(symbol: str = SPX, interval: str = "DAY", closed: bool = True) -> Bar:
    return Bar(symbol, interval, T0 - dt.timedelta(hours=6), T0, 1, 1, 1, 1, 1, closed=closed)


class Log(Strategy):
    """Writes every callback into a shared log; orders what ``plan`` says per callback."""

    def __init__(self, name: str, log: list[tuple[str, str]], symbols: tuple[str, ...] = (),
                 groups: dict[str, Any] | None = None, plan: dict[str, int] | None = None) -> None:
        super().__init__()
        self.name, self.log, self.symbols = name, log, symbols  # type: ignore[misc]
        self.groups = groups or {}
        self.plan = plan or {}

    def _seen(self, what: str) -> None:
        self.log.append((self.strategy_name, what))
        for _ in range(self.plan.get(what, 0)):
            self.ctx.buy(SPX, 1)

    def on_start(self) -> None:
        self._seen("start")

    def on_bar(self, b: Any) -> None:
        self._seen(f"bar {b.full_symbol}")

    def on_mtf(self, s: Any) -> None:
        self._seen(f"mtf {s.group}")

    def on_news(self, item: Any) -> None:
        self._seen("news")

    def on_order(self, o: Any) -> None:
        self._seen(f"order {o.status}")

    def on_fill(self, f: Any) -> None:
        self._seen("fill")

    def on_stop(self) -> None:
        self._seen("stop")


class Exchange:
    """A submit that fills every order at once: an accepted and a filled Order, then a Fill."""

    def __init__(self) -> None:
        self.sent: list[OrderIntent | Cancel] = []

    def __call__(self, item: OrderIntent | Cancel) -> list[Event]:
        self.sent.append(item)
        if isinstance(item, Cancel):
            return []
        n = len(self.sent)
        o = Order(n, item.full_symbol, "buy", 1.0, "market", T0, strategy=item.strategy, client_id=item.client_id)
        done = Order(n, item.full_symbol, "buy", 1.0, "market", T0, strategy=item.strategy,
                     client_id=item.client_id, status="filled")
        return [Event("order.accepted.X", o), Event("order.filled.X", done),
                Event("fill.X", Fill(n, item.full_symbol, "buy", 1.0, 1.0, 0.0, T0, item.strategy, item.client_id))]


def test_events_reach_the_strategies_that_want_them_after_on_start() -> None:
    log: list[tuple[str, str]] = []
    a = Log("a", log, symbols=(SPX,), groups={"g1": {SPX: ["DAY"]}})
    b = Log("b", log)  # wants everything
    d = StrategyDriver([a, b], None, Exchange())
    d.handle("bar", bar(IXIC))
    d.handle("bar", bar(SPX, closed=False))  # forming: nobody
    d.handle("mtf", Snapshot("g2", T0, {}, ()))
    d.handle("news", NewsItem(T0, "headline"))
    d.stop()
    d.stop()  # once
    assert log == [("a", "start"), ("b", "start"), ("b", f"bar {IXIC}"), ("b", "mtf g2"), ("a", "news"),
                   ("b", "news"), ("a", "stop"), ("b", "stop")]
    with pytest.raises(ValueError, match="not market events"):
        d.handle("fill", None)


def test_orders_are_submitted_after_the_callback_and_their_events_go_to_the_owner_first() -> None:
    log: list[tuple[str, str]] = []
    ex = Exchange()
    a, b = Log("a", log, plan={f"bar {SPX}": 1}), Log("b", log)
    d = StrategyDriver([a, b], None, ex)
    events = d.handle_bar(bar())
    assert [i.client_id for i in ex.sent] == ["a-1"] and a.ctx.now == T0 and ex.sent[0].interval == "DAY"
    assert [e.topic for e in events] == ["order.accepted.X", "order.filled.X", "fill.X"]
    assert log[2:] == [("a", f"bar {SPX}"), ("a", "order accepted"), ("a", "order filled"), ("a", "fill"),
                       ("b", f"bar {SPX}")]


def test_a_raising_callback_is_counted_and_its_queued_orders_still_go() -> None:
    class Raiser(Log):
        def on_bar(self, b: Any) -> None:
            self.ctx.buy(SPX, 1)
            raise RuntimeError("boom")

    ex = Exchange()
    log: list[tuple[str, str]] = []
    d = StrategyDriver([Raiser("r", log), Log("ok", log)], None, ex)
    d.handle_bar(bar())
    assert d.errors == ["strategy r.on_bar raised RuntimeError: boom"]
    assert [i.client_id for i in ex.sent] == ["r-1"] and ("ok", f"bar {SPX}") in log


def test_reentry_from_fills_is_bounded() -> None:
    log: list[tuple[str, str]] = []
    ex = Exchange()
    # every fill orders again, and each order fills at once: stops at the nesting bound
    d = StrategyDriver([Log("loop", log, plan={f"bar {SPX}": 1, "fill": 1})], None, ex)
    d.handle_bar(bar())
    assert len(ex.sent) == 1 + MAX_ROUNDS  # the bar's order, then one per nesting level
    assert d.errors and f"nested {MAX_ROUNDS} deep" in d.errors[-1]


def test_one_callback_placing_orders_forever_is_cut_off() -> None:
    class Greedy(Log):
        def on_order(self, o: Any) -> None:
            if o.status == "accepted":
                self.ctx.buy(SPX, 1)

    ex = Exchange()
    d = StrategyDriver([Greedy("g", [], plan={f"bar {SPX}": 1})], None, ex)
    d.handle_bar(bar())
    assert 0 < len(ex.sent) <= MAX_ROUNDS + 1 and d.errors


def test_names_must_be_unique() -> None:
    with pytest.raises(ValueError, match="duplicated: a"):
        StrategyDriver([Log("a", []), Log("a", [])], None, Exchange())


def test_topics_follow_overrides_and_broader_prefixes_win() -> None:
    class Bars(Strategy):
        symbols, intervals = (SPX,), ("DAY",)

    assert topics_for([Bars()]) == ["replay.", f"ohlc.{SPX}.DAY"]
    assert topics_for([Bars(), Log("all", [])]) == ["replay.", "ohlc.", "mtf.", "news.", "order.", "fill."]


def test_the_clock_is_the_latest_data_time_of_the_events_handled() -> None:
    seen: list[Any] = []

    class Clock(Log):
        def _seen(self, what: str) -> None:
            seen.append((what, self.ctx.now))
            super()._seen(what)

    d = StrategyDriver([Clock("c", [], plan={f"bar {SPX}": 1})], None, Exchange())
    d.start()
    later = T0 + dt.timedelta(hours=2)
    d.handle("news", NewsItem(later, "late news"))
    d.handle("news", NewsItem(T0 - dt.timedelta(days=1), "old news"))  # never back
    d.handle_bar(bar())  # closes at T0, before the news: the clock stays
    assert seen[:4] == [("start", None), ("news", later), ("news", later), (f"bar {SPX}", later)]
    d.handle_execution([Event("fill.X", Fill(9, SPX, "buy", 1.0, 1.0, 0.0, later + dt.timedelta(hours=1), "c"))])
    assert seen[-1] == ("fill", later + dt.timedelta(hours=1))
