"""Stop, stop-limit and bracket orders, time in force, reduce-only closes and cancelling only one's own orders."""

from __future__ import annotations

import datetime as dt

import pytest

from aitrados.marketdata.models import Bar
from aitrados.trading.broker import BrokerSettings, PaperBroker
from aitrados.trading.engine import TradingEngine
from aitrados.trading.orders import OrderIntent
from aitrados.trading.strategy import Cancel, Strategy

SYM = "STOCK:US:TEST"
UTC = dt.timezone.utc


def bar(day: int, o: float, h: float, l: float, c: float) -> Bar:
    start = dt.datetime(2024, 1, day, 14, 30, tzinfo=UTC)
    return Bar(SYM, "DAY", start, start.replace(hour=21, minute=0), o, h, l, c, 1000.0)


def place(b: PaperBroker, strategy: str = "t", **kw: object) -> list:
    intent = OrderIntent(SYM, strategy=strategy, client_id=f"{strategy}-{b._next_id}", **kw)  # type: ignore[arg-type]
    out = []
    for o in b.create_orders(intent, b.now):
        out += b.accept(o)
    return out


@pytest.mark.parametrize(
    "side,stop,nxt,expected",
    [
        ("buy", 105, (101, 104, 100, 103), None),  # high 104 < 105: not triggered
        ("buy", 105, (103, 106, 102, 105.5), 105.0),  # traded through: at the stop
        ("buy", 105, (108, 109, 107, 108), 108.0),  # gapped above: at the worse open
        ("sell", 95, (97, 98, 96, 97), None),
        ("sell", 95, (97, 98, 94, 96), 95.0),
        ("sell", 95, (92, 93, 91, 92), 92.0),  # gapped below: at the open
    ],
)
def test_stop_orders_trigger_and_fill_at_the_stop_or_a_worse_open(side: str, stop: float, nxt: tuple,
                                                                   expected: float | None) -> None:
    b = PaperBroker(BrokerSettings(initial_cash=10_000))
    b.handle_bar(bar(2, 100, 101, 99, 100))
    place(b, side=side, quantity=5, order_type="stop", stop_price=stop)
    b.handle_bar(bar(3, *nxt))
    fills = b.fills()
    if expected is None:
        assert fills == [] and len(b.working_orders()) == 1
    else:
        assert [f.price for f in fills] == [expected]


def test_stop_limit_waits_for_its_limit_after_the_trigger() -> None:
    b = PaperBroker(BrokerSettings(initial_cash=10_000))
    b.handle_bar(bar(2, 100, 101, 99, 100))
    # buy stop 105 limit 106: the trigger bar reaches the limit too -> min(105, 106) = 105
    place(b, side="buy", quantity=1, order_type="stop_limit", stop_price=105, limit_price=106)
    # buy stop 105 limit 104: a limit below the stop is taken to trade before the stop: waits a bar
    place(b, side="buy", quantity=1, order_type="stop_limit", stop_price=105, limit_price=104)
    b.handle_bar(bar(3, 103, 107, 102, 106))
    assert [f.price for f in b.fills()] == [105]
    (waiting,) = b.working_orders()
    assert waiting.triggered and waiting.limit_price == 104
    b.handle_bar(bar(4, 106, 107, 105, 106))  # low 105 > 104: no fill
    assert len(b.fills()) == 1
    b.handle_bar(bar(5, 103.5, 104.5, 103, 104))  # a triggered stop-limit is a limit: min(open 103.5, 104)
    assert [f.price for f in b.fills()] == [105, 103.5]


def test_bracket_stop_loss_on_the_entry_bar_cancels_the_take_profit() -> None:
    b = PaperBroker(BrokerSettings(initial_cash=10_000))
    b.handle_bar(bar(2, 100, 101, 99, 100))
    place(b, side="buy", quantity=10, stop_loss=95, take_profit=110)
    ev = b.handle_bar(bar(3, 100, 101, 94, 96))  # entry at the open 100, then down through 95
    assert [(f.side, f.price, f.tag) for f in b.fills()] == [("buy", 100, ""), ("sell", 95, "sl")]
    cancelled = [e.payload for e in ev if e.topic.startswith("order.cancelled")]
    assert [(o.client_id, o.reason) for o in cancelled] == [("t-1.tp", "bracket sibling filled")]
    assert b.position(SYM) == 0 and b.working_orders() == []


def test_bracket_take_profit_later_and_children_gone_when_closed_otherwise() -> None:
    b = PaperBroker(BrokerSettings(initial_cash=10_000))
    b.handle_bar(bar(2, 100, 101, 99, 100))
    place(b, side="sell", quantity=10, stop_loss=105, take_profit=90)  # a short bracket
    b.handle_bar(bar(3, 100, 101, 98, 99))
    assert {o.tag for o in b.working_orders()} == {"sl", "tp"}
    assert b.pending(SYM) == 0  # children do not count as pending exposure
    b.handle_bar(bar(4, 95, 96, 88, 89))  # high 96 < 105; low 88 <= 90: take profit at max(open 95, 90)... for a buy: min
    assert [(f.side, f.price, f.tag) for f in b.fills()][-1] == ("buy", 90, "tp")
    assert b.position(SYM) == 0 and b.working_orders() == []

    place(b, side="buy", quantity=5, stop_loss=80, take_profit=120)
    b.handle_bar(bar(5, 90, 91, 89, 90))
    assert len(b.working_orders()) == 2
    place(b, target=0)  # the strategy closes by itself: the bracket is cancelled
    b.handle_bar(bar(8, 91, 92, 90, 91))
    assert b.position(SYM) == 0 and b.working_orders() == []
    assert {o.reason for o in b.orders("cancelled")} >= {"position closed"}


def test_day_orders_expire_after_their_first_day_and_gtc_ones_stay() -> None:
    b = PaperBroker(BrokerSettings(initial_cash=10_000))
    b.handle_bar(bar(2, 100, 101, 99, 100))
    place(b, side="buy", quantity=1, order_type="limit", limit_price=90, time_in_force="DAY")
    place(b, side="buy", quantity=1, order_type="limit", limit_price=90)
    b.handle_bar(bar(3, 99, 100, 95, 96))  # the DAY order's day: not reached
    assert len(b.working_orders()) == 2
    ev = b.handle_bar(bar(4, 89, 90, 85, 86))  # next day: the DAY order expired before trading; GTC fills
    expired = [e.payload for e in ev if e.topic.startswith("order.cancelled")]
    assert len(expired) == 1 and "DAY order expired" in expired[0].reason
    assert [f.price for f in b.fills()] == [89]


def test_reduce_only_is_cut_to_the_position_and_cancelled_when_flat() -> None:
    b = PaperBroker(BrokerSettings(initial_cash=10_000, fill_at="close"))
    b.handle_bar(bar(2, 100, 100, 100, 100))
    place(b, side="buy", quantity=3)
    place(b, side="sell", quantity=10, reduce_only=True)
    assert b.position(SYM) == 0 and b.fills()[-1].quantity == 3
    ev = place(b, side="sell", quantity=1, reduce_only=True)
    assert ev[-1].payload.status == "cancelled" and "nothing to close" in ev[-1].payload.reason


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(side="buy", quantity=1, order_type="stop"), "stop_price"),
        (dict(side="buy", quantity=1, order_type="market", stop_price=3), "takes no stop_price"),
        (dict(side="buy", quantity=1, stop_loss=120, take_profit=110), "stop_loss < take_profit"),
        (dict(side="buy", quantity=1, order_type="limit", limit_price=100, stop_loss=101), "both sides"),
        (dict(side="sell", quantity=1, stop_loss=90, take_profit=95), "take_profit < stop_loss"),
        (dict(target=5, stop_loss=90), "attach to an entry"),
        (dict(side="buy", quantity=1, time_in_force="IOC"), "time_in_force"),
        (dict(side="buy", fraction=1.5), "fraction"),
        (dict(side="buy", quantity=1, fraction=0.5), "exactly one"),
    ],
)
def test_inconsistent_intents_are_refused_with_the_reason(kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        OrderIntent(SYM, **kw).validate()
    with pytest.raises(ValueError, match="full_symbol is empty"):
        OrderIntent("", side="buy", quantity=1).validate()


def test_a_bracket_must_straddle_the_last_price() -> None:
    b = PaperBroker(BrokerSettings(initial_cash=10_000))
    b.handle_bar(bar(2, 100, 101, 99, 100))
    with pytest.raises(ValueError, match="stop_loss < entry < take_profit"):
        b.create_orders(OrderIntent(SYM, side="buy", quantity=1, stop_loss=101, take_profit=120), b.now)
    assert len(b.create_orders(OrderIntent(SYM, side="buy", quantity=1, stop_loss=99, take_profit=120), b.now)) == 1


class Placer(Strategy):
    """Places one resting limit on the first bar and, when told, tries to cancel someone's client id."""

    symbols = (SYM,)

    def __init__(self, name: str, victim: str | None = None) -> None:
        super().__init__()
        self.name_ = name
        self.victim = victim
        self.n = 0

    @property
    def strategy_name(self) -> str:
        return self.name_

    def on_bar(self, bar: Bar) -> None:
        self.n += 1
        if self.n == 1:
            self.ctx.buy(SYM, 1, limit=50)
        elif self.n == 2 and self.victim:
            self.ctx.cancel(self.victim)


def test_cancel_acts_only_on_the_callers_own_orders() -> None:
    a, b = Placer("a"), Placer("b", victim="a-1")
    engine = TradingEngine([a, b], PaperBroker(BrokerSettings(initial_cash=10_000)))
    engine.run([bar(2, 100, 101, 99, 100), bar(3, 100, 101, 99, 100)])
    assert {o.client_id for o in engine.broker.working_orders()} == {"a-1", "b-1"}  # b could not cancel a-1
    assert engine.submit(Cancel("a-1", "b")) == []
    ev = engine.submit(Cancel("a-1", "a"))
    assert ev[0].topic.startswith("order.cancelled") and ev[0].payload.client_id == "a-1"
