"""The paper broker: simulated fills, cash, positions, PnL and the equity curve.

Pure logic driven by bars, no I/O. Every state change is returned as a list of
:class:`~aitrados.trading.orders.Event` (and passed to each callable in ``listeners``)
so the caller can publish ``order.*``, ``fill.*`` and ``position.*``.

Fill rules (documented in docs/trading.md):

* **Market orders**, ``fill_at="next_open"`` (default): fill at the open of the next bar of
  the order's symbol (and of the order's interval when it has one) whose open time is at or
  after the order's creation time. ``fill_at="close"``: fill at once at the last close.
  Slippage moves the price against the order: ``price * (1 ± slippage_bps / 10_000)``.
* **Limit orders** rest until the price trades through: a buy limit ``L`` fills when the
  bar's ``low <= L``, at ``min(open, L)`` (a gap below the limit fills at the better open);
  a sell limit fills when ``high >= L``, at ``max(open, L)``. No slippage on limit fills.
  With ``fill_at="close"`` a limit that is marketable at the current close fills at that close.
* **Commission**: ``commission_per_share * quantity + commission_bps / 10_000 * notional``,
  at least ``min_commission`` when that is set; paid from cash on each fill.
* **Cash**: unless ``allow_margin``, a buy whose cost would take cash below zero is rejected
  at fill time (rule ``broker.cash``). Unless ``allow_short``, a sell that would leave a
  negative position is rejected when submitted (rule ``broker.short``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Literal

import msgspec
from loguru import logger
from pydantic import BaseModel, Field

from aitrados.events import Kind, build_topic
from aitrados.marketdata.models import Bar

from .orders import Account, Event, Fill, Order, OrderIntent, Position

__all__ = ["BrokerSettings", "EquityPoint", "PaperBroker", "deliver"]

_EPS = 1e-9


class BrokerSettings(BaseModel):
    """Settings of the paper broker."""

    model_config = {"extra": "forbid"}

    initial_cash: float = Field(100_000.0, gt=0, description="starting cash")
    fill_at: Literal["next_open", "close"] = Field("next_open", description="market orders: next bar's open or current close")
    commission_per_share: float = Field(0.0, ge=0, description="commission per unit traded")
    commission_bps: float = Field(0.0, ge=0, description="commission in basis points of notional")
    min_commission: float = Field(0.0, ge=0, description="least commission per fill (0 = none)")
    slippage_bps: float = Field(0.0, ge=0, description="market-order slippage in basis points, against the order")
    allow_short: bool = Field(True, description="allow sells that leave a negative position")
    allow_margin: bool = Field(False, description="allow buys that take cash below zero")


class EquityPoint(msgspec.Struct, frozen=True):
    """One point of the equity curve, at a bar's close time."""

    datetime: dt.datetime
    equity: float
    cash: float
    gross_exposure: float


Listener = Callable[[Event], None]


def deliver(events: list[Event], listeners: list[Listener], owner: str) -> list[Event]:
    """Pass each event to each listener; a listener that raises is logged, never propagated. Returns ``events``."""
    for ev in events:
        for listener in listeners:
            try:
                listener(ev)
            except Exception:
                logger.exception("{} listener {!r} raised on {}", owner, listener, ev.topic)
    return events


class PaperBroker:
    """Simulated execution against bars; see the module docstring for the fill rules."""

    def __init__(self, settings: BrokerSettings | None = None, listeners: list[Listener] | None = None) -> None:
        self.settings = settings or BrokerSettings()
        self.listeners: list[Listener] = list(listeners or [])
        self.cash = float(self.settings.initial_cash)
        self._positions: dict[str, Position] = {}
        self._strategy_pos: dict[tuple[str, str], float] = {}
        self._orders: dict[int, Order] = {}
        self._working: list[int] = []
        self._fills: list[Fill] = []
        self._last_price: dict[str, float] = {}
        self._next_id = 1
        self.now: dt.datetime | None = None
        self.equity_curve: list[EquityPoint] = []
        self.commission_paid = 0.0

    # ------------------------------------------------------------------ queries
    def position(self, full_symbol: str, strategy: str | None = None) -> float:
        """Signed position in ``full_symbol``: the account's, or the part ``strategy``'s fills built (0 when none)."""
        if strategy is not None:
            return self._strategy_pos.get((strategy, full_symbol), 0.0)
        pos = self._positions.get(full_symbol)
        return pos.quantity if pos else 0.0

    def pending(self, full_symbol: str, strategy: str | None = None) -> float:
        """Signed quantity of the working orders in ``full_symbol`` (only ``strategy``'s when given)."""
        return sum(
            o.signed_quantity
            for o in (self._orders[i] for i in self._working)
            if o.full_symbol == full_symbol and (strategy is None or o.strategy == strategy)
        )

    def last_price(self, full_symbol: str) -> float | None:
        """Last close seen for ``full_symbol``, or None."""
        return self._last_price.get(full_symbol)

    def positions(self) -> list[Position]:
        """Copies of all positions ever held (flat ones included, for their realised PnL)."""
        return [msgspec.structs.replace(p) for p in self._positions.values()]

    def orders(self, status: str | None = None) -> list[Order]:
        """Copies of all orders in submission order, optionally only those with ``status``."""
        return [msgspec.structs.replace(o) for o in self._orders.values() if status is None or o.status == status]

    def working_orders(self) -> list[Order]:
        """Copies of the orders still waiting to fill."""
        return [msgspec.structs.replace(self._orders[i]) for i in self._working]

    def fills(self) -> list[Fill]:
        """All fills in order."""
        return list(self._fills)

    def equity(self) -> float:
        """Cash plus the market value of all positions at their last prices."""
        return self.cash + sum(p.quantity * (p.last_price if p.last_price is not None else p.avg_price) for p in self._positions.values())

    def account(self) -> Account:
        """The account summary now."""
        gross = sum(abs(p.quantity) * (p.last_price or p.avg_price) for p in self._positions.values())
        return Account(
            cash=self.cash,
            equity=self.equity(),
            initial_cash=float(self.settings.initial_cash),
            realised_pnl=sum(p.realised_pnl for p in self._positions.values()),
            unrealised_pnl=sum(p.unrealised_pnl for p in self._positions.values()),
            commission=self.commission_paid,
            gross_exposure=gross,
            datetime=self.now,
        )

    # ------------------------------------------------------------------ order entry
    def create_order(self, intent: OrderIntent, now: dt.datetime) -> Order | None:
        """Resolve ``intent`` into an order (a target becomes the quantity still missing).

        A target refers to the intent's strategy's own position (what its fills built, plus its
        working orders), so strategies sharing a symbol do not trade against each other; the
        account position is their sum. Returns None when the target is already reached.
        :raises ValueError: when the intent is inconsistent (see :meth:`OrderIntent.validate`).
        """
        intent.validate()
        if intent.target is not None:
            delta = (intent.target - self.position(intent.full_symbol, intent.strategy)
                     - self.pending(intent.full_symbol, intent.strategy))
            if abs(delta) <= _EPS:
                return None
            side: Literal["buy", "sell"] = "buy" if delta > 0 else "sell"
            qty = abs(delta)
        else:
            assert intent.side is not None and intent.quantity is not None
            side, qty = intent.side, float(intent.quantity)
        order = Order(
            id=self._next_id,
            full_symbol=intent.full_symbol,
            side=side,
            quantity=qty,
            order_type=intent.order_type,
            created_at=now,
            limit_price=intent.limit_price,
            strategy=intent.strategy,
            client_id=intent.client_id,
            interval=intent.interval,
            tag=intent.tag,
        )
        self._next_id += 1
        return order

    def reject(self, order: Order, rule: str, reason: str) -> list[Event]:
        """Record ``order`` as rejected by ``rule`` and return the ``order.rejected.*`` event."""
        order.status, order.rule, order.reason = "rejected", rule, reason
        self._orders[order.id] = order
        logger.info("order {} {} {} {} rejected by {}: {}", order.client_id or order.id, order.side, order.quantity, order.full_symbol, rule, reason)
        return self._emit([self._order_event(order)])

    def accept(self, order: Order) -> list[Event]:
        """Accept a (risk-approved) order: it works until filled or cancelled.

        With ``fill_at="close"`` a market order (or a limit marketable at the last close)
        fills at once. Returns the events.
        """
        if not self.settings.allow_short:
            after = self.position(order.full_symbol) + self.pending(order.full_symbol) + order.signed_quantity
            if after < -_EPS:
                return self.reject(order, "broker.short", f"sell would leave position {after:g}; shorting is off (allow_short)")
        self._orders[order.id] = order
        events = [self._order_event(order)]
        self._working.append(order.id)
        if self.settings.fill_at == "close":
            last = self._last_price.get(order.full_symbol)
            if last is not None:
                price = self._fill_price(order, last, last, last)
                if price is not None:
                    events += self._fill(order, price, self.now or order.created_at, market_ref=order.order_type == "market")
        return self._emit(events)

    def cancel(self, key: int | str) -> list[Event]:
        """Cancel a working order by id or client id; returns the events (none if nothing matched)."""
        for oid in list(self._working):
            o = self._orders[oid]
            if o.id == key or (isinstance(key, str) and o.client_id == key):
                self._working.remove(oid)
                o.status, o.reason = "cancelled", "cancelled by request"
                return self._emit([self._order_event(o)])
        return []

    # ------------------------------------------------------------------ bars
    def handle_bar(self, bar: Bar) -> list[Event]:
        """Fill the working orders this bar reaches, then mark positions to its close.

        Returns the events; appends/updates the equity point at ``bar.close_datetime``.
        """
        events: list[Event] = []
        sym = bar.full_symbol
        # the bar clock moves first, so fills at this bar land on its equity point, not the previous one
        self.now = bar.close_datetime if self.now is None or bar.close_datetime > self.now else self.now
        for oid in list(self._working):
            o = self._orders[oid]
            if o.full_symbol != sym or bar.datetime < o.created_at:
                continue
            if o.interval is not None and o.interval != bar.interval:
                continue
            price = self._fill_price(o, bar.open, bar.high, bar.low)
            if price is not None:
                events += self._fill(o, price, bar.datetime, market_ref=o.order_type == "market")
        self._last_price[sym] = bar.close
        pos = self._positions.get(sym)
        if pos is not None:
            pos.last_price = bar.close
            pos.unrealised_pnl = (bar.close - pos.avg_price) * pos.quantity if pos.quantity else 0.0
        self._record_equity()
        return self._emit(events)

    # ------------------------------------------------------------------ internals
    def _fill_price(self, o: Order, open_: float, high: float, low: float) -> float | None:
        if o.order_type == "market":
            return open_
        assert o.limit_price is not None
        lim = o.limit_price
        if o.side == "buy":
            return min(open_, lim) if low <= lim else None
        return max(open_, lim) if high >= lim else None

    def _commission(self, qty: float, price: float) -> float:
        s = self.settings
        c = s.commission_per_share * qty + s.commission_bps / 10_000.0 * qty * price
        if s.min_commission > 0:
            c = max(c, s.min_commission)
        return c

    def _fill(self, o: Order, ref_price: float, when: dt.datetime, market_ref: bool) -> list[Event]:
        s = self.settings
        price = ref_price
        slip = 0.0
        if market_ref and s.slippage_bps:
            factor = s.slippage_bps / 10_000.0
            price = ref_price * (1 + factor) if o.side == "buy" else ref_price * (1 - factor)
            slip = abs(price - ref_price) * o.quantity
        commission = self._commission(o.quantity, price)
        signed = o.signed_quantity
        if not s.allow_margin and signed > 0:
            cost = signed * price + commission
            if self.cash - cost < -_EPS:
                self._working.remove(o.id)
                o.status, o.rule = "rejected", "broker.cash"
                o.reason = f"buy needs {cost:.2f} but cash is {self.cash:.2f}; lower the size or set allow_margin"
                logger.info("order {} rejected at fill: {}", o.client_id or o.id, o.reason)
                return [self._order_event(o)]
        self._working.remove(o.id)
        self.cash -= signed * price + commission
        self.commission_paid += commission
        pos = self._positions.get(o.full_symbol)
        if pos is None:
            pos = self._positions[o.full_symbol] = Position(full_symbol=o.full_symbol)
        self._apply(pos, signed, price)
        key = (o.strategy, o.full_symbol)
        self._strategy_pos[key] = self._strategy_pos.get(key, 0.0) + signed
        pos.commission += commission
        last = self._last_price.get(o.full_symbol, price)
        pos.last_price = last
        pos.unrealised_pnl = (last - pos.avg_price) * pos.quantity if pos.quantity else 0.0
        o.status, o.filled_at, o.fill_price = "filled", when, price
        fill = Fill(
            order_id=o.id,
            full_symbol=o.full_symbol,
            side=o.side,
            quantity=o.quantity,
            price=price,
            commission=commission,
            datetime=when,
            strategy=o.strategy,
            client_id=o.client_id,
            slippage=slip,
        )
        self._fills.append(fill)
        self._record_equity()
        return [
            self._order_event(o),
            Event(build_topic(Kind.FILL, o.full_symbol), fill),
            Event(build_topic(Kind.POSITION, o.full_symbol), msgspec.structs.replace(pos)),
        ]

    @staticmethod
    def _apply(pos: Position, signed: float, price: float) -> None:
        q0 = pos.quantity
        q1 = q0 + signed
        if abs(q1) <= _EPS:
            q1 = 0.0
        if q0 == 0 or (q0 > 0) == (signed > 0):
            pos.avg_price = (q0 * pos.avg_price + signed * price) / q1
        else:
            closed = min(abs(signed), abs(q0))
            pos.realised_pnl += closed * (price - pos.avg_price) * (1.0 if q0 > 0 else -1.0)
            if q1 == 0:
                pos.avg_price = 0.0
            elif (q1 > 0) != (q0 > 0):
                pos.avg_price = price  # flipped: the remainder opened at this price
        pos.quantity = q1

    def _record_equity(self) -> None:
        if self.now is None:
            return
        gross = sum(abs(p.quantity) * (p.last_price or p.avg_price) for p in self._positions.values())
        point = EquityPoint(self.now, self.equity(), self.cash, gross)
        if self.equity_curve and self.equity_curve[-1].datetime == self.now:
            self.equity_curve[-1] = point
        else:
            self.equity_curve.append(point)

    @staticmethod
    def _order_event(o: Order) -> Event:
        return Event(build_topic(Kind.ORDER, o.full_symbol, o.status), msgspec.structs.replace(o))

    def _emit(self, events: list[Event]) -> list[Event]:
        return deliver(events, self.listeners, "broker")
