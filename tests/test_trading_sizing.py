"""Sizes (units, share of equity, risk-based), reversals as a close then an open, margin and margin calls.

Hand-computed cases; the arithmetic is in the comments.
"""

from __future__ import annotations

import datetime as dt
import math

import pytest

from aitrados.marketdata.models import Bar
from aitrados.trading.broker import BrokerSettings, PaperBroker
from aitrados.trading.engine import TradingEngine
from aitrados.trading.orders import MarginCall, OrderIntent, parse_size
from aitrados.trading.report import build_report
from aitrados.trading.strategy import Strategy, StrategyContext

SYM = "STOCK:US:TEST"
UTC = dt.timezone.utc


def bar(day: int, o: float, h: float | None = None, l: float | None = None, c: float | None = None) -> Bar:
    start = dt.datetime(2024, 1, day, 14, 30, tzinfo=UTC)
    h = max(o, c or o) if h is None else h
    l = min(o, c or o) if l is None else l
    return Bar(SYM, "DAY", start, start.replace(hour=21, minute=0), o, h, l, o if c is None else c, 1000.0)


def place(b: PaperBroker, **kw: object) -> list:
    intent = OrderIntent(SYM, strategy="t", client_id=f"t-{b._next_id}", **kw)  # type: ignore[arg-type]
    out = []
    for o in b.create_orders(intent, b.now):
        out += b.accept(o)
    return out


@pytest.mark.parametrize("size,want", [(50, (50.0, None)), ("50", (50.0, None)), (0.5, (0.5, None)),
                                       ("99.99%", (None, 0.9999)), (" 100 % ", (None, 1.0)), ("0.5%", (None, 0.005))])
def test_parse_size_reads_units_and_percentages(size: object, want: tuple) -> None:
    assert parse_size(size) == want  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["abc", "0%", "150%", "-5%", "nan%", -1, 0, math.inf, math.nan, True, None, "x%"])
def test_parse_size_rejects_nonsense_with_a_clear_error(bad: object) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(bad)  # type: ignore[arg-type]


def test_share_of_equity_is_sized_at_the_fill_price() -> None:
    b = PaperBroker(BrokerSettings(initial_cash=10_000, commission_bps=10, commission_per_share=0.01))
    b.handle_bar(bar(2, 100))
    place(b, side="buy", fraction=0.5)
    assert b.working_orders()[0].quantity == 49  # the estimate at the last price: 5000 // (100.1 + 0.01)
    b.handle_bar(bar(3, 80))
    # at the fill price 80: 5000 // (80 + 80 * 0.001 + 0.01) = 5000 // 80.09 = 62
    f = b.fills()[0]
    assert (f.quantity, f.price) == (62, 80)
    assert f.commission == pytest.approx(62 * 0.01 + 62 * 80 * 0.001)


def test_share_of_equity_too_small_for_one_unit_is_rejected_at_fill() -> None:
    b = PaperBroker(BrokerSettings(initial_cash=100))
    b.handle_bar(bar(2, 100))
    place(b, side="buy", fraction=0.5)
    ev = b.handle_bar(bar(3, 120))
    o = ev[0].payload
    assert o.status == "rejected" and o.rule == "broker.margin" and "no whole unit" in o.reason
    assert b.position(SYM) == 0 and b.cash == 100


def test_size_for_risk_loses_at_most_the_share_at_the_stop() -> None:
    b = PaperBroker(BrokerSettings(initial_cash=10_000))
    b.handle_bar(bar(2, 100))
    ctx = StrategyContext("t", b)
    # 1 % of 10 000 = 100 at risk; a 2.5 stop distance -> 40 units (40 * 2.5 = 100)
    assert ctx.size_for_risk(SYM, 2.5, "1%") == 40 == ctx.size_for_risk(SYM, 2.5, 0.01)
    assert ctx.size_for_risk(SYM, 3.0, 0.01) == 33  # rounded down: 33 * 3 = 99 <= 100
    with pytest.raises(ValueError, match="stop_distance"):
        ctx.size_for_risk(SYM, 0, 0.01)
    with pytest.raises(ValueError, match="risk"):
        ctx.size_for_risk(SYM, 1, 2)


class Flipper(Strategy):
    """Short 50 on the first bar, then wants +50 on the fourth (the issue's stuck-flip case)."""

    name = "flipper"
    symbols = (SYM,)

    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    def on_bar(self, bar: Bar) -> None:
        self.n += 1
        if self.n == 1:
            self.ctx.target_position(SYM, -50)
        elif self.n == 4:
            self.ctx.target_position(SYM, 50)


def test_a_rejected_open_leaves_the_account_flat_and_is_counted() -> None:
    engine = TradingEngine([Flipper()], PaperBroker(BrokerSettings(initial_cash=10_000)))
    # short 50 at 100 (cash 15 000); the price runs to 190: equity 15 000 - 50 * 190 = 5 500
    engine.run([bar(2, 100), bar(3, 100), bar(4, 150), bar(5, 190), bar(8, 190), bar(9, 190)])
    b = engine.broker
    fills = b.fills()
    # the reversal: cover 50 at 190 (a reduction, always allowed), then buy 50 needs 9 500 > cash 5 500: refused
    assert [(f.side, f.quantity, f.price) for f in fills] == [("sell", 50, 100), ("buy", 50, 190)]
    rejected = b.orders("rejected")
    assert len(rejected) == 1 and rejected[0].rule == "broker.cash" and rejected[0].client_id == "flipper-2"
    assert b.position(SYM) == 0 and b.equity() == pytest.approx(5_500)  # flat, not stuck short
    rep = build_report(b)
    assert rep.metrics.rejected == 1


def test_initial_margin_allows_leverage_and_refuses_beyond_it() -> None:
    lev = PaperBroker(BrokerSettings(initial_cash=10_000, allow_margin=True, initial_margin=0.5))
    lev.handle_bar(bar(2, 100))
    place(lev, side="buy", quantity=199)  # margin 0.5 * 19 900 = 9 950 <= 10 000
    lev.handle_bar(bar(3, 100))
    assert lev.position(SYM) == 199 and lev.cash == pytest.approx(-9_900)
    place(lev, side="buy", quantity=2)  # free equity 10 000 - 0.5 * 19 900 = 50 < 0.5 * 200
    ev = lev.handle_bar(bar(4, 100))
    assert ev[0].payload.rule == "broker.margin" and lev.position(SYM) == 199
    place(lev, side="sell", quantity=199)  # a reduction always fills
    lev.handle_bar(bar(5, 100))
    assert lev.position(SYM) == 0

    cash = PaperBroker(BrokerSettings(initial_cash=10_000, allow_margin=True))  # initial_margin 1: no leverage
    cash.handle_bar(bar(2, 100))
    place(cash, side="sell", quantity=101)  # a short needs margin too: 10 100 > 10 000
    ev = cash.handle_bar(bar(3, 100))
    assert ev[0].payload.rule == "broker.margin" and cash.position(SYM) == 0


def test_margin_call_liquidates_logs_and_is_reported() -> None:
    b = PaperBroker(BrokerSettings(initial_cash=10_000, initial_margin=0.5, maintenance_margin=0.25))
    b.handle_bar(bar(2, 100))
    place(b, side="sell", quantity=200)  # short 20 000 on 10 000 equity (2x)
    b.handle_bar(bar(3, 100))
    assert b.position(SYM) == -200 and b.margin_calls == []
    place(b, side="buy", quantity=1, order_type="limit", limit_price=50)  # a working order the margin call cancels
    # close 120: equity 10 000 - 200 * 20 = 6 000 >= 0.25 * 24 000 = 6 000: no call yet
    assert not [e for e in b.handle_bar(bar(4, 100, 120, 100, 120)) if e.topic == "margin.call"]
    # close 130: equity 4 000 < 0.25 * 26 000 = 6 500: liquidated at the close
    ev = b.handle_bar(bar(5, 120, 130, 120, 130))
    calls = [e.payload for e in ev if e.topic == "margin.call"]
    assert len(calls) == 1 and isinstance(calls[0], MarginCall) and calls[0].equity == pytest.approx(4_000)
    assert b.position(SYM) == 0 and b.working_orders() == []
    last = b.fills()[-1]
    assert (last.side, last.quantity, last.price, last.tag) == ("buy", 200, 130, "margin_call")
    assert b.equity() == pytest.approx(4_000) and b.equity_curve[-1].equity == pytest.approx(4_000)
    assert build_report(b).metrics.margin_calls == 1


def test_equity_never_goes_below_zero_silently() -> None:
    # no maintenance margin: still a call once equity is at or below zero (a gap through it)
    b = PaperBroker(BrokerSettings(initial_cash=10_000, maintenance_margin=0.0))
    b.handle_bar(bar(2, 100))
    place(b, side="sell", quantity=100)
    b.handle_bar(bar(3, 100))
    b.handle_bar(bar(4, 250))  # equity 20 000 - 25 000 = -5 000
    assert len(b.margin_calls) == 1 and b.position(SYM) == 0
    assert "liquidating" in b.margin_calls[0].reason

    # a close through a gap leaves the account flat in deficit: a margin call says so, once
    b = PaperBroker(BrokerSettings(initial_cash=1_000))
    b.handle_bar(bar(2, 5))
    place(b, side="sell", fraction=0.1)  # short 20 at 5
    b.handle_bar(bar(3, 5))
    place(b, target=0)
    b.handle_bar(bar(4, 56))  # covered at 56: cash 1 000 + 100 - 1 120 = -20
    b.handle_bar(bar(5, 56))
    assert b.position(SYM) == 0 and b.equity() == pytest.approx(-20)
    assert [c.gross_exposure for c in b.margin_calls] == [0.0] and "at or below zero" in b.margin_calls[0].reason


def test_margin_settings_are_checked() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="maintenance_margin"):
        BrokerSettings(initial_margin=0.3, maintenance_margin=0.5)
    with pytest.raises(ValidationError):
        BrokerSettings(initial_margin=0)


class Targets(Strategy):
    """Moves to the next target of a fixed list on each bar (units or a share of equity, long or short)."""

    name = "targets"
    symbols = (SYM,)

    def __init__(self, plan: list[tuple[int, object]]) -> None:
        super().__init__()
        self.plan = list(plan)
        self.i = 0
        self.asked: list[int] = []

    def on_bar(self, bar: Bar) -> None:
        if self.i < len(self.plan):
            direction, size = self.plan[self.i]
            self.ctx.hold(SYM, direction, size)  # type: ignore[arg-type]
            self.asked.append(direction)
        self.i += 1


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=60, deadline=None)
@given(
    prices=st.lists(st.floats(5, 500, allow_nan=False), min_size=4, max_size=25),
    plan=st.lists(st.tuples(st.sampled_from([-1, 0, 1]),
                            st.one_of(st.integers(1, 400), st.sampled_from(["10%", "99.99%", "100%"]))),
                  min_size=1, max_size=20),
    cash=st.sampled_from([1_000.0, 10_000.0]),
    bps=st.sampled_from([0.0, 20.0]),
)
def test_never_stuck_on_the_old_side_and_the_books_add_up(prices: list[float], plan: list, cash: float, bps: float) -> None:
    bars = [bar(2 + i, p) for i, p in enumerate(prices)]
    strat = Targets(plan)
    engine = TradingEngine([strat], PaperBroker(BrokerSettings(initial_cash=cash, commission_bps=bps)))
    held: list[float] = []
    for b in bars:
        engine.handle_bar(b)
        held.append(engine.broker.position(SYM, "targets"))
    assert engine.errors == []
    b = engine.broker
    # after the fills of bar i+1, the side held is the side asked at bar i, or flat (an open refused or
    # cut by the margin); never the other side; and with no margin call, equity never went below zero
    for i, want in enumerate(strat.asked[: len(held) - 1]):
        got = held[i + 1]
        assert got == 0 or (got > 0) == (want > 0), (i, want, got)
    if not b.margin_calls:
        assert all(p.equity >= -1e-6 for p in b.equity_curve)
    # the books: equity = cash + position x last close; trade pnl adds up to the equity change
    assert b.equity() == pytest.approx(b.cash + b.position(SYM) * bars[-1].close, abs=1e-6)
    rep = build_report(b)
    assert sum(t.pnl for t in rep.trades) == pytest.approx(b.equity() - cash, abs=1e-6)
    assert rep.metrics.rejected == len(b.orders("rejected"))


def test_each_leg_of_a_reversal_is_checked_by_risk() -> None:
    from aitrados.trading.risk import RiskEngine, RiskLimits

    # the daily loss limit is hit when the flip comes: the close (a reduction) passes, the open is refused
    engine = TradingEngine([Flipper()], PaperBroker(BrokerSettings(initial_cash=100_000)),
                           RiskEngine(RiskLimits(daily_loss_limit=100)))
    engine.run([bar(2, 100), bar(3, 100), bar(4, 100), bar(5, 110), bar(8, 110), bar(9, 110)])
    b = engine.broker
    assert [(f.side, f.quantity, f.price) for f in b.fills()] == [("sell", 50, 100), ("buy", 50, 110)]
    (refused,) = b.orders("rejected")
    assert (refused.rule, refused.client_id, refused.reduce_only) == ("daily_loss", "flipper-2", False)
    assert b.position(SYM) == 0
