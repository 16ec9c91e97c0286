"""Risk engine: built-in rules, kill switch, bar-clock rate limit, external checks and fail-closed behaviour."""

from __future__ import annotations

import datetime as dt

from aitrados.trading.orders import Order
from aitrados.trading.risk import RiskContext, RiskDecision, RiskEngine, RiskLimits

SYM = "STOCK:US:TEST"
T0 = dt.datetime(2024, 1, 2, 21, 0, tzinfo=dt.timezone.utc)


def order(side: str = "buy", qty: float = 1, limit: float | None = None, oid: int = 1) -> Order:
    return Order(oid, SYM, side, qty, "limit" if limit else "market", T0, limit_price=limit, client_id=f"c{oid}")


def ctx(position: float = 0, price: float = 100, equity: float = 10_000, now: dt.datetime = T0, pending: float = 0) -> RiskContext:
    return RiskContext(now=now, position=position, price=price, equity=equity, pending=pending)


def test_no_limits_approves_by_default() -> None:
    d = RiskEngine().check(order(), ctx())
    assert d == RiskDecision(True, "default", "no rule objected")


def test_max_position_counts_position_and_working_orders_and_lets_reductions_through() -> None:
    r = RiskEngine(RiskLimits(max_position=10, max_position_by_symbol={"STOCK:US:OTHER": 1}))
    assert r.check(order(qty=10), ctx()).approved
    d = r.check(order(qty=11), ctx())
    assert not d.approved and d.rule == "max_position" and "11" in d.reason
    assert not r.check(order(qty=4), ctx(position=4, pending=3)).approved  # 4 + 3 + 4 = 11
    assert r.check(order("sell", 2), ctx(position=15)).approved  # over the limit but reducing
    assert not r.check(order("sell", 11), ctx()).approved  # short side counts too


def test_max_order_notional_uses_limit_price_when_given() -> None:
    r = RiskEngine(RiskLimits(max_order_notional=999))
    d = r.check(order(qty=10), ctx(price=100))  # 10 * 100 = 1000 > 999
    assert not d.approved and d.rule == "max_order_notional"
    assert r.check(order(qty=10, limit=99), ctx(price=100)).approved  # 10 * 99 = 990


def test_max_orders_window_runs_on_the_bar_clock() -> None:
    r = RiskEngine(RiskLimits(max_orders=2, orders_window_seconds=86_400, max_order_notional=1e9))
    h = dt.timedelta(hours=1)
    assert r.check(order(), ctx(now=T0)).approved
    assert not r.check(order(qty=1e8), ctx(now=T0 + h)).approved  # rejected orders do not count
    assert r.check(order(), ctx(now=T0 + h)).approved
    d = r.check(order(), ctx(now=T0 + 2 * h))
    assert not d.approved and d.rule == "max_orders"
    # the window is (now - 24 h, now]: at T0 + 24 h the order at T0 has left it, the one at T0 + 1 h has not
    assert r.check(order(), ctx(now=T0 + 24 * h)).approved
    assert not r.check(order(), ctx(now=T0 + 24 * h + dt.timedelta(minutes=59))).approved
    assert r.check(order(), ctx(now=T0 + 25 * h)).approved


def test_daily_loss_limit_blocks_new_exposure_until_the_next_day() -> None:
    r = RiskEngine(RiskLimits(daily_loss_limit=500))
    day = dt.timedelta(days=1)
    r.observe(T0, 10_000)
    r.observe(T0 + day, 9_400)  # the day starts from yesterday's 10_000: loss 600 >= 500
    assert r.day_pnl(9_400) == -600
    d = r.check(order(qty=1), ctx(position=5, equity=9_400, now=T0 + day))
    assert not d.approved and d.rule == "daily_loss"
    assert r.check(order("sell", 5), ctx(position=5, equity=9_400, now=T0 + day)).approved  # closing is fine
    assert not r.check(order("sell", 8), ctx(position=5, equity=9_400, now=T0 + day)).approved  # flip is not
    r.observe(T0 + 2 * day, 9_400)  # a new day starts from 9_400
    assert r.check(order(qty=1), ctx(position=0, equity=9_400, now=T0 + 2 * day)).approved


def test_kill_switch_trip_and_reset() -> None:
    r = RiskEngine()
    r.trip("operator says stop")
    assert r.tripped and r.state()["kill_switch"] is True
    d = r.check(order("sell", 1), ctx(position=1))
    assert not d.approved and d.rule == "kill_switch" and "operator says stop" in d.reason
    r.reset()
    assert not r.tripped and r.check(order(), ctx()).approved


def test_external_checks_first_non_none_wins() -> None:
    calls: list[str] = []

    def abstain(o: Order, c: RiskContext) -> None:
        calls.append("abstain")

    def small_only(o: Order, c: RiskContext) -> str | None:
        calls.append("small_only")
        return "too big for this desk" if o.quantity > 5 else None

    def approve_all(o: Order, c: RiskContext) -> bool:
        calls.append("approve_all")
        return True

    def never_reached(o: Order, c: RiskContext) -> bool:
        calls.append("never")
        raise AssertionError("after a decision no check runs")

    r = RiskEngine(checks=[abstain, small_only, approve_all, never_reached])
    d = r.check(order(qty=6), ctx())
    assert not d.approved and d.rule.endswith("small_only") and d.reason == "too big for this desk"
    assert calls == ["abstain", "small_only"]
    calls.clear()
    d = r.check(order(qty=1), ctx())
    assert d.approved and d.rule.endswith("approve_all")
    assert calls == ["abstain", "small_only", "approve_all"]


def test_checks_that_raise_or_answer_nonsense_reject() -> None:
    def broken(o: Order, c: RiskContext) -> None:
        raise KeyError("missing field")

    r = RiskEngine()
    r.add_check(broken, name="plugin_x.check_order")
    d = r.check(order(), ctx())
    assert not d.approved and d.rule == "plugin_x.check_order"
    assert "raised KeyError" in d.reason and "fail closed" in d.reason

    r2 = RiskEngine(checks=[lambda o, c: 42])
    d2 = r2.check(order(), ctx())
    assert not d2.approved and "returned int" in d2.reason


def test_builtin_rule_that_raises_rejects() -> None:
    r = RiskEngine(RiskLimits(max_position=10, max_order_equity_multiple=None))
    # a malformed context (position None) makes the rule raise: the order is rejected, not passed
    d = r.check(order(), RiskContext(now=T0, position=None, price=100.0, equity=1.0))  # type: ignore[arg-type]
    assert not d.approved and d.rule == "max_position" and "TypeError" in d.reason


def test_trading_settings_build_an_engine() -> None:
    import pytest
    from pydantic import ValidationError

    from aitrados.trading.engine import engine_from_settings
    from aitrados.trading.settings import TradingSettings

    s = TradingSettings.model_validate({"broker": {"fill_at": "close", "initial_cash": 5_000},
                                        "risk": {"max_position": 3}})
    engine = engine_from_settings([], s, checks=[lambda o, c: None])
    assert engine.broker.settings.fill_at == "close" and engine.broker.cash == 5_000
    assert engine.risk.limits.max_position == 3
    with pytest.raises(ValidationError, match="max_positon"):
        TradingSettings.model_validate({"risk": {"max_positon": 3}})  # typo: extra fields are refused


def test_max_position_stops_a_reduction_that_flips_past_the_limit() -> None:
    r = RiskEngine(RiskLimits(max_position=5))
    # long 10 (above the limit, e.g. after the limit was lowered): selling 19 would leave -9
    d = r.check(order("sell", 19), ctx(position=10))
    assert not d.approved and d.rule == "max_position" and "-9" in d.reason
    assert r.check(order("sell", 7), ctx(position=10)).approved  # 10 -> 3: a plain reduction
    assert r.check(order("sell", 14), ctx(position=10)).approved  # 10 -> -4: flips, but within the limit


def test_orders_are_valued_at_their_worst_case() -> None:
    from aitrados.trading.risk import order_value_price

    r = RiskEngine(RiskLimits(max_order_notional=10_000))
    # the case: a sell limit at 0.01 with the market at 1228.10 fills near the market, not at 0.01
    d = r.check(order("sell", 10, limit=0.01), ctx(price=1228.10, position=10))
    assert not d.approved and d.rule == "max_order_notional" and "12281.00" in d.reason
    assert order_value_price(order("sell", 1, limit=2000), 1228.10) == 2000  # a limit above: at the limit
    # a buy cannot pay more than its limit; without one, the worse of last and stop
    assert order_value_price(order("buy", 1, limit=5), 100) == 5
    stop_buy = Order(9, SYM, "buy", 1, "stop", T0, stop_price=110)
    assert order_value_price(stop_buy, 100) == 110
    assert r.check(order("buy", 99, limit=100), ctx(price=1000)).approved  # 99 * 100 = 9 900 <= 10 000


def test_default_limits_bound_every_order() -> None:
    r = RiskEngine()
    d = r.check(order("sell", 1e17), ctx())
    assert not d.approved and d.rule == "order_size" and "max_order_quantity" in d.reason
    # 300 * 100 = 30 000 > 2 x equity 10 000
    d = r.check(order("buy", 300), ctx())
    assert not d.approved and d.rule == "order_size" and "max_order_equity_multiple" in d.reason
    assert r.check(order("buy", 200), ctx()).approved  # 20 000 = 2 x equity
    assert r.check(order("sell", 300), ctx(position=300)).approved  # a reduction is never bounded by equity
    d = r.check(order("buy", 1), ctx(equity=-5))
    assert not d.approved and "no order may add exposure" in d.reason


def test_unknown_and_empty_symbols_are_refused() -> None:
    import math

    r = RiskEngine()
    d = r.check(order(limit=10), ctx(price=math.nan))  # no price seen for the symbol, limit or not
    assert not d.approved and d.rule == "symbol" and "unknown symbol" in d.reason
    blank = Order(3, " ", "buy", 1, "market", T0)
    assert r.check(blank, ctx()).rule == "symbol"


def test_engine_defaults_refuse_absurd_orders_and_unknown_symbols() -> None:
    from aitrados.marketdata.models import Bar
    from aitrados.trading.broker import BrokerSettings, PaperBroker
    from aitrados.trading.engine import TradingEngine
    from aitrados.trading.orders import OrderIntent

    engine = TradingEngine([], PaperBroker(BrokerSettings(initial_cash=10_000)))
    t = dt.datetime(2024, 1, 2, 14, 30, tzinfo=dt.timezone.utc)
    engine.handle_bar(Bar(SYM, "DAY", t, t.replace(hour=21), 100, 101, 99, 100, 1.0))
    out = []
    for intent in (OrderIntent(SYM, side="sell", quantity=1e17, strategy="x", client_id="x-1"),
                   OrderIntent(SYM, target=-1e300, strategy="x", client_id="x-2"),
                   OrderIntent("STOCK:US:NOPE", side="buy", quantity=1, order_type="limit", limit_price=5,
                               strategy="x", client_id="x-3")):
        out += engine.submit(intent)
    rejected = [e.payload for e in out if e.topic.startswith("order.rejected")]
    assert [(o.client_id, o.rule) for o in rejected] == [("x-1", "order_size"), ("x-2", "order_size"), ("x-3", "symbol")]
    engine.handle_bar(Bar(SYM, "DAY", t + dt.timedelta(days=1), t.replace(hour=21) + dt.timedelta(days=1), 100, 101, 99, 100, 1.0))
    assert engine.broker.fills() == [] and engine.broker.equity() == 10_000
