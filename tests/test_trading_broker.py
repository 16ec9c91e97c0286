"""Paper broker fills, costs and PnL against hand-computed cases (the arithmetic is in the comments)."""

from __future__ import annotations

import datetime as dt

import pytest

from aitrados.marketdata.models import Bar
from aitrados.trading.broker import BrokerSettings, PaperBroker
from aitrados.trading.orders import Event, OrderIntent

SYM = "STOCK:US:TEST"
UTC = dt.timezone.utc


def bar(day: int, o: float, h: float, l: float, c: float, interval: str = "DAY", sym: str = SYM) -> Bar:
    start = dt.datetime(2024, 1, day, 14, 30, tzinfo=UTC)
    return Bar(sym, interval, start, start.replace(hour=21, minute=0), o, h, l, c, 1000.0)


def submit(b: PaperBroker, side: str, qty: float, limit: float | None = None, interval: str | None = None) -> list[Event]:
    intent = OrderIntent(SYM, side=side, quantity=qty, order_type="limit" if limit else "market",
                         limit_price=limit, strategy="t", client_id=f"t-{qty}-{side}", interval=interval)
    assert b.now is not None
    order = b.create_order(intent, b.now)
    assert order is not None
    return b.accept(order)


def test_market_order_next_open_with_commission_and_slippage() -> None:
    b = PaperBroker(BrokerSettings(initial_cash=10_000, commission_per_share=0.01, commission_bps=5, slippage_bps=10))
    b.handle_bar(bar(2, 100, 101, 99, 100.5))
    ev = submit(b, "buy", 10)
    assert [e.topic for e in ev] == [f"order.accepted.{SYM}"]
    assert b.cash == 10_000 and b.position(SYM) == 0  # nothing fills before the next bar

    ev = b.handle_bar(bar(3, 101, 103, 100, 102))
    assert [e.topic for e in ev] == [f"order.filled.{SYM}", f"fill.{SYM}", f"position.{SYM}"]
    fill = ev[1].payload
    # price = open 101 * (1 + 10/10_000) = 101.101
    assert fill.price == pytest.approx(101.101, abs=1e-12)
    # commission = 0.01 * 10 + 5/10_000 * 10 * 101.101 = 0.1 + 0.5055050 = 0.605505
    assert fill.commission == pytest.approx(0.605505, abs=1e-12)
    # slippage cost = (101.101 - 101) * 10 = 1.01
    assert fill.slippage == pytest.approx(1.01, abs=1e-9)
    assert fill.datetime == bar(3, 1, 1, 1, 1).datetime
    # cash = 10_000 - 10 * 101.101 - 0.605505 = 8988.384495
    assert b.cash == pytest.approx(8988.384495, abs=1e-9)
    pos = b.positions()[0]
    assert pos.quantity == 10 and pos.avg_price == pytest.approx(101.101)
    # unrealised at the close 102 = (102 - 101.101) * 10 = 8.99; equity = 8988.384495 + 10 * 102
    assert pos.unrealised_pnl == pytest.approx(8.99, abs=1e-9)
    assert b.equity() == pytest.approx(10_008.384495, abs=1e-9)

    submit(b, "sell", 10)
    b.handle_bar(bar(4, 104, 105, 103, 104.5))
    # sell at 104 * (1 - 0.001) = 103.896; commission = 0.1 + 0.0005 * 1038.96 = 0.61948
    f2 = b.fills()[-1]
    assert f2.price == pytest.approx(103.896, abs=1e-12)
    assert f2.commission == pytest.approx(0.61948, abs=1e-12)
    pos = b.positions()[0]
    # realised = (103.896 - 101.101) * 10 = 27.95
    assert pos.quantity == 0 and pos.realised_pnl == pytest.approx(27.95, abs=1e-9)
    # cash = 8988.384495 + 1038.96 - 0.61948 = 10026.725015 = 10_000 + 27.95 - 0.605505 - 0.61948
    assert b.cash == pytest.approx(10_026.725015, abs=1e-9)
    assert b.equity() == pytest.approx(b.cash)
    acct = b.account()
    assert acct.commission == pytest.approx(0.605505 + 0.61948)
    assert [p.equity for p in b.equity_curve] == pytest.approx([10_000, 10_008.384495, 10_026.725015])


def test_market_order_at_current_close_setting() -> None:
    b = PaperBroker(BrokerSettings(initial_cash=10_000, fill_at="close"))
    b.handle_bar(bar(2, 100, 101, 99, 100.5))
    ev = submit(b, "buy", 10)
    # fills at once at the current close 100.5, stamped with the bar's close time
    assert [e.topic for e in ev] == [f"order.accepted.{SYM}", f"order.filled.{SYM}", f"fill.{SYM}", f"position.{SYM}"]
    assert ev[2].payload.price == 100.5 and ev[2].payload.datetime == bar(2, 1, 1, 1, 1).close_datetime
    assert b.cash == pytest.approx(10_000 - 1005)
    assert b.equity_curve[-1].equity == pytest.approx(10_000)  # cash 8995 + 10 * 100.5


@pytest.mark.parametrize(
    "side,limit,nxt,expected",
    [
        ("buy", 99.5, (101, 103, 100, 102), None),  # low 100 > 99.5: no fill
        ("buy", 99.5, (100, 100.5, 99, 99.8), 99.5),  # traded through: at the limit
        ("buy", 99.5, (98, 99, 97, 98.5), 98.0),  # gapped below: min(open 98, 99.5) = 98
        ("sell", 105, (104, 106, 103, 105.5), 105.0),  # high 106 >= 105: at the limit
        ("sell", 105, (107, 108, 106, 107), 107.0),  # gapped above: max(open 107, 105) = 107
        ("sell", 105, (104, 104.9, 103, 104), None),  # high below the limit: no fill
    ],
)
def test_limit_orders_fill_when_price_trades_through(side: str, limit: float, nxt: tuple, expected: float | None) -> None:
    b = PaperBroker(BrokerSettings(initial_cash=10_000, slippage_bps=50))  # no slippage on limit fills
    b.handle_bar(bar(2, 100, 101, 99, 100.5))
    submit(b, side, 5, limit=limit)
    b.handle_bar(bar(3, *nxt))
    fills = b.fills()
    if expected is None:
        assert fills == [] and len(b.working_orders()) == 1
    else:
        assert len(fills) == 1 and fills[0].price == expected and fills[0].slippage == 0


def test_add_reduce_flip_and_cover_arithmetic() -> None:
    b = PaperBroker(BrokerSettings(initial_cash=10_000, fill_at="close"))
    steps = [(2, "buy", 10, 100), (3, "buy", 10, 110), (4, "sell", 5, 120), (5, "sell", 25, 100), (8, "buy", 10, 90)]
    for day, side, qty, px in steps:
        b.handle_bar(bar(day, px, px, px, px))
        submit(b, side, qty)
    p = b.positions()[0]
    # buy 10@100 + 10@110 -> 20 @ 105; sell 5@120 -> realised 5*15 = 75, 15 @ 105;
    # sell 25@100 -> closes 15: 15*(100-105) = -75 (total 0), opens short 10 @ 100;
    # buy 10@90 -> covers: 10*(100-90) = +100 -> total realised 100, flat
    assert p.quantity == 0 and p.realised_pnl == pytest.approx(100.0)
    # cash = 10_000 - 1000 - 1100 + 600 + 2500 - 900 = 10_100
    assert b.cash == pytest.approx(10_100.0)
    assert b.equity() == pytest.approx(10_100.0)


def test_short_position_pnl_and_avg_price() -> None:
    b = PaperBroker(BrokerSettings(initial_cash=10_000, fill_at="close"))
    b.handle_bar(bar(2, 50, 50, 50, 50))
    submit(b, "sell", 20)
    b.handle_bar(bar(3, 45, 46, 44, 44))
    p = b.positions()[0]
    # short 20 @ 50, mark 44: unrealised = (44 - 50) * -20 = +120; cash = 10_000 + 1000
    assert p.quantity == -20 and p.avg_price == 50 and p.unrealised_pnl == pytest.approx(120)
    assert b.equity() == pytest.approx(11_000 - 20 * 44)


def test_cash_and_short_checks_reject_with_rule() -> None:
    b = PaperBroker(BrokerSettings(initial_cash=10_000))
    b.handle_bar(bar(2, 100, 101, 99, 100))
    submit(b, "buy", 200)  # 200 * 101 = 20_200 > 10_000 cash
    ev = b.handle_bar(bar(3, 101, 102, 100, 101))
    assert [e.topic for e in ev] == [f"order.rejected.{SYM}"]
    o = ev[0].payload
    assert o.rule == "broker.cash" and "allow_margin" in o.reason
    assert b.cash == 10_000 and b.position(SYM) == 0

    nb = PaperBroker(BrokerSettings(allow_short=False))
    nb.handle_bar(bar(2, 100, 101, 99, 100))
    ev = submit(nb, "sell", 1)
    assert ev[0].topic == f"order.rejected.{SYM}" and ev[0].payload.rule == "broker.short"


def test_cancel_and_target_resolution() -> None:
    b = PaperBroker(BrokerSettings(initial_cash=10_000, fill_at="close"))
    b.handle_bar(bar(2, 100, 101, 99, 100))
    submit(b, "buy", 3)  # strategy "t" holds 3
    # target 10 with 3 held -> buy 7; target 10 again with 7 working (limit, not filled) -> nothing
    o = b.create_order(OrderIntent(SYM, target=10, order_type="limit", limit_price=90, strategy="t"), b.now)
    assert o is not None and o.side == "buy" and o.quantity == 7
    b.accept(o)
    assert b.create_order(OrderIntent(SYM, target=10, strategy="t"), b.now) is None
    # a reversal is a close (reduce-only, of what is held and working) then an open
    close, open_ = b.create_orders(OrderIntent(SYM, target=-2, strategy="t", client_id="t-9"), b.now)
    assert (close.side, close.quantity, close.reduce_only, close.client_id) == ("sell", 10, True, "t-9.close")
    assert (open_.side, open_.quantity, open_.reduce_only, open_.client_id) == ("sell", 2, False, "t-9")
    with pytest.raises(ValueError, match="create_orders"):
        b.create_order(OrderIntent(SYM, target=-2, strategy="t"), b.now)
    # another strategy's target counts only its own position: it starts from 0
    o3 = b.create_order(OrderIntent(SYM, target=4, strategy="u"), b.now)
    assert o3.side == "buy" and o3.quantity == 4
    b.accept(o3)
    assert b.position(SYM) == 7 and b.position(SYM, "t") == 3 and b.position(SYM, "u") == 4
    ev = b.cancel(o.id)
    assert ev[0].topic == f"order.cancelled.{SYM}" and b.working_orders() == []
    assert b.cancel(o.id) == []


def test_order_waits_for_a_bar_opening_after_it_and_of_its_interval() -> None:
    b = PaperBroker(BrokerSettings(initial_cash=10_000))
    b.handle_bar(bar(3, 100, 101, 99, 100))
    submit(b, "buy", 1, interval="DAY")
    b.handle_bar(bar(1, 90, 91, 89, 90, interval="WEEK"))  # a bar that opened before the order: no fill
    assert b.fills() == []
    b.handle_bar(bar(4, 95, 96, 94, 95, interval="WEEK"))  # opened after, but another interval
    assert b.fills() == []
    b.handle_bar(bar(4, 97, 98, 96, 97))
    assert b.fills()[0].price == 97


def test_listener_errors_do_not_break_the_broker() -> None:
    seen: list[str] = []

    def boom(e: Event) -> None:
        raise RuntimeError("listener bug")

    b = PaperBroker(BrokerSettings(fill_at="close"), listeners=[boom, lambda e: seen.append(e.topic)])
    b.handle_bar(bar(2, 100, 101, 99, 100))
    submit(b, "buy", 1)
    assert seen == [f"order.accepted.{SYM}", f"order.filled.{SYM}", f"fill.{SYM}", f"position.{SYM}"]


def test_bad_intents_say_what_is_wrong() -> None:
    b = PaperBroker()
    now = dt.datetime(2024, 1, 2, tzinfo=UTC)
    with pytest.raises(ValueError, match="exactly one of quantity"):
        b.create_order(OrderIntent(SYM, side="buy", quantity=1, target=2), now)
    with pytest.raises(ValueError, match="positive finite"):
        b.create_order(OrderIntent(SYM, side="buy", quantity=-1), now)
    with pytest.raises(ValueError, match="limit_price"):
        b.create_order(OrderIntent(SYM, side="buy", quantity=1, order_type="limit"), now)
    with pytest.raises(ValueError, match="side"):
        b.create_order(OrderIntent(SYM, quantity=1), now)


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["buy", "sell"]), st.integers(1, 30), st.floats(50, 150)), min_size=1, max_size=25))
def test_accounting_identity_holds_for_any_order_sequence(steps: list[tuple[str, int, float]]) -> None:
    # equity = initial cash + realised + unrealised - commission, and cash matches the fills, whatever the sequence
    b = PaperBroker(BrokerSettings(initial_cash=1e6, fill_at="close", commission_per_share=0.01, commission_bps=3,
                                   slippage_bps=5))
    for day, (side, qty, px) in enumerate(steps, start=1):
        when = dt.datetime(2024, 1, 1, tzinfo=UTC) + dt.timedelta(days=day)
        b.handle_bar(Bar(SYM, "DAY", when, when + dt.timedelta(hours=6), px, px, px, px, 1.0))
        o = b.create_order(OrderIntent(SYM, side=side, quantity=qty), b.now)
        b.accept(o)
    acct = b.account()
    assert acct.equity == pytest.approx(1e6 + acct.realised_pnl + acct.unrealised_pnl - acct.commission, abs=1e-6)
    fills = b.fills()
    assert b.cash == pytest.approx(1e6 - sum(f.signed_quantity * f.price + f.commission for f in fills), abs=1e-6)
    assert b.position(SYM) == sum(f.signed_quantity for f in fills)
