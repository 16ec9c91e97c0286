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
* **Stop orders** trigger when a bar trades through the stop ``S`` (buy: ``high >= S``, sell:
  ``low <= S``) and fill at once at ``max(open, S)`` (buy) / ``min(open, S)`` (sell), with
  slippage. A **stop-limit** becomes a limit once triggered; on the trigger bar it fills at
  ``min(S, L)`` (buy) / ``max(S, L)`` (sell) when the limit is reached, except that a limit
  on the far side of the stop is assumed hit before the stop and waits for the next bar.
* **Brackets**: an entry with ``stop_loss``/``take_profit`` gets, once it fills, a stop and a
  limit order closing the filled quantity. After a market entry they can fill on the entry
  bar itself (after a limit or stop entry, from the next bar). On a bar, orders are tried
  newest stop-loss and newest close (``reduce_only``) first, then the rest in submission order,
  take-profits last (as backtesting.py does): a close decided at the last bar exits at the open
  before a stop-loss placed earlier can trigger. One bracket leg filling cancels the other;
  both are cancelled when the strategy's position is closed otherwise.
* **Time in force**: ``DAY`` orders expire after the last bar of the first UTC day they could
  trade on; ``GTC`` ones work until filled or cancelled.
* **Sizes**: an order for a ``fraction`` of equity gets, at fill time,
  ``floor(available * fraction / (price + commission per unit))`` whole units, where
  ``available = max(0, equity - initial_margin * gross exposure) / initial_margin``.
  ``reduce_only`` orders are cut to what the strategy holds (and cancelled when it is flat).
* **Commission**: ``commission_per_share * quantity + quantity * price * commission_bps / 10_000``,
  at least ``min_commission`` when that is set; paid from cash on each fill.
* **Margin**: an order that opens or adds exposure fills only if
  ``initial_margin * (notional + commission) <= equity - initial_margin * gross exposure``
  (rule ``broker.margin``); unless ``allow_margin``, a buy whose cost would take cash below
  zero is rejected too (rule ``broker.cash``). Orders that reduce a position always fill.
  After each bar, when equity is at most zero or below ``maintenance_margin * gross exposure``,
  a **margin call** liquidates every position at its last price (logged, published on
  ``margin.call`` and counted in the report); a flat account left at or below zero (a close
  through a gap) gets one margin call too. Unless ``allow_short``, a sell that would leave a
  negative position (or any share-of-equity sell that is not a close) is rejected when
  submitted (rule ``broker.short``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Literal

import msgspec
from loguru import logger

from ..events import Kind, build_topic
from ..marketdata.models import Bar

from .orders import Account, Event, Fill, MarginCall, Order, OrderIntent, Position
from .settings import BrokerSettings

__all__ = ["BrokerSettings", "EquityPoint", "PaperBroker", "deliver"]

_EPS = 1e-9


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
        self.margin_calls: list[MarginCall] = []
        self._deficit = False
        #: closes per symbol as (bar close time, close), of the first interval seen for it: the report's
        #: price lines and buy-and-hold
        self.closes: dict[str, list[tuple[dt.datetime, float]]] = {}
        self._close_interval: dict[str, str] = {}

    # ------------------------------------------------------------------ queries
    def position(self, full_symbol: str, strategy: str | None = None) -> float:
        """Signed position in ``full_symbol``: the account's, or the part ``strategy``'s fills built (0 when none)."""
        if strategy is not None:
            return self._strategy_pos.get((strategy, full_symbol), 0.0)
        pos = self._positions.get(full_symbol)
        return pos.quantity if pos else 0.0

    def pending(self, full_symbol: str, strategy: str | None = None) -> float:
        """Signed quantity of the working orders in ``full_symbol`` (only ``strategy``'s when given).

        Bracket children (stop-loss/take-profit) are not counted: they only close what their entry opened.
        """
        return sum(
            o.signed_quantity
            for o in (self._orders[i] for i in self._working)
            if o.full_symbol == full_symbol and o.parent_id is None and (strategy is None or o.strategy == strategy)
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

    def gross_exposure(self) -> float:
        """Sum of ``|quantity| * last price`` over all positions."""
        return sum(abs(p.quantity) * (p.last_price or p.avg_price) for p in self._positions.values())

    def available(self) -> float:
        """Buying power for new exposure: ``max(0, equity - initial_margin * gross exposure) / initial_margin``."""
        im = self.settings.initial_margin
        return max(0.0, self.equity() - im * self.gross_exposure()) / im

    def account(self) -> Account:
        """The account summary now."""
        return Account(
            cash=self.cash,
            equity=self.equity(),
            initial_cash=float(self.settings.initial_cash),
            realised_pnl=sum(p.realised_pnl for p in self._positions.values()),
            unrealised_pnl=sum(p.unrealised_pnl for p in self._positions.values()),
            commission=self.commission_paid,
            gross_exposure=self.gross_exposure(),
            datetime=self.now,
        )

    # ------------------------------------------------------------------ order entry
    def create_orders(self, intent: OrderIntent, now: dt.datetime) -> list[Order]:
        """Resolve ``intent`` into orders: one, or for a reversal a close then an open.

        A target refers to the intent's strategy's own position (what its fills built, plus its
        working orders), so strategies sharing a symbol do not trade against each other; the
        account position is their sum. Moving to a target on the other side of zero gives a
        ``reduce_only`` close (client id ``<id>.close``) and then the opening order, each
        checked on its own, so a rejected open leaves the strategy flat, never stuck in the old
        side. Returns ``[]`` when the target is already reached.
        :raises ValueError: when the intent is inconsistent (see :meth:`OrderIntent.validate`).
        """
        intent.validate()
        if intent.stop_loss is not None or intent.take_profit is not None:
            self._check_bracket(intent)
        if intent.target is None:
            if intent.fraction is not None:
                qty = self._estimate_units(intent.full_symbol, intent.fraction)
            else:
                assert intent.quantity is not None
                qty = float(intent.quantity)
            assert intent.side is not None
            return [self._new_order(intent, now, intent.side, qty, intent.reduce_only, intent.client_id)]
        held = self.position(intent.full_symbol, intent.strategy) + self.pending(intent.full_symbol, intent.strategy)
        target = intent.target
        if abs(target - held) <= _EPS:
            return []
        out: list[Order] = []
        same_side = held != 0 and target != 0 and (target > 0) == (held > 0)
        if same_side:
            delta = target - held
            side: Literal["buy", "sell"] = "buy" if delta > 0 else "sell"
            reduces = abs(target) < abs(held)
            return [self._new_order(intent, now, side, abs(delta), reduces, intent.client_id)]
        if abs(held) > _EPS:
            close_side: Literal["buy", "sell"] = "sell" if held > 0 else "buy"
            cid = f"{intent.client_id}.close" if abs(target) > _EPS and intent.client_id else intent.client_id
            out.append(self._new_order(intent, now, close_side, abs(held), True, cid))
        if abs(target) > _EPS:
            out.append(self._new_order(intent, now, "buy" if target > 0 else "sell", abs(target), False, intent.client_id))
        return out

    def _check_bracket(self, intent: OrderIntent) -> None:
        """ValueError unless the bracket lies on both sides of the entry (its limit/stop, else the last price)."""
        ref = intent.limit_price or intent.stop_price or self._last_price.get(intent.full_symbol)
        if ref is None:
            return
        lo, hi = (intent.stop_loss, intent.take_profit) if intent.side == "buy" else (intent.take_profit, intent.stop_loss)
        if not ((lo is None or lo < ref) and (hi is None or ref < hi)):
            raise ValueError(f"order intent {intent.client_id}: a {intent.side} bracket needs "
                             f"{'stop_loss < entry < take_profit' if intent.side == 'buy' else 'take_profit < entry < stop_loss'}"
                             f" (entry {ref:g}, stop_loss {intent.stop_loss}, take_profit {intent.take_profit})")

    def create_order(self, intent: OrderIntent, now: dt.datetime) -> Order | None:
        """The single order ``intent`` resolves to (None when its target is reached).

        :raises ValueError: when the intent is inconsistent or is a reversal, which needs two
            orders (use :meth:`create_orders`).
        """
        orders = self.create_orders(intent, now)
        if len(orders) > 1:
            raise ValueError(f"order intent {intent.client_id}: a reversal is a close then an open; use create_orders")
        return orders[0] if orders else None

    def _new_order(self, intent: OrderIntent, now: dt.datetime, side: Literal["buy", "sell"], qty: float,
                   reduce_only: bool, client_id: str) -> Order:
        opening = not reduce_only
        order = Order(
            id=self._next_id,
            full_symbol=intent.full_symbol,
            side=side,
            quantity=qty,
            order_type=intent.order_type,
            created_at=now,
            limit_price=intent.limit_price,
            strategy=intent.strategy,
            client_id=client_id,
            interval=intent.interval,
            tag=intent.tag,
            fraction=intent.fraction if intent.target is None else None,
            stop_price=intent.stop_price,
            time_in_force=intent.time_in_force,
            stop_loss=intent.stop_loss if opening else None,
            take_profit=intent.take_profit if opening else None,
            reduce_only=reduce_only,
        )
        self._next_id += 1
        return order

    def _unit_cost(self, price: float) -> float:
        """Price of one unit plus its commission (minimum commission aside)."""
        s = self.settings
        return price + price * (s.commission_bps / 10_000.0) + s.commission_per_share

    def _estimate_units(self, full_symbol: str, fraction: float) -> float:
        """Whole units a ``fraction`` order would buy at the last price now (0 without a price)."""
        last = self._last_price.get(full_symbol)
        if last is None or last <= 0:
            return 0.0
        return float(int((self.available() * fraction) // self._unit_cost(last)))

    def reject(self, order: Order, rule: str, reason: str) -> list[Event]:
        """Record ``order`` as rejected by ``rule`` and return the ``order.rejected.*`` event."""
        order.status, order.rule, order.reason = "rejected", rule, reason
        self._orders[order.id] = order
        logger.warning("order {} {} {} {} rejected by {}: {}", order.client_id or order.id, order.side, order.quantity, order.full_symbol, rule, reason)
        return self._emit([self._order_event(order)])

    def accept(self, order: Order) -> list[Event]:
        """Accept a (risk-approved) order: it works until filled, cancelled or expired.

        With ``fill_at="close"`` a market order (or a limit or stop marketable at the last
        close) fills at once. Returns the events.
        """
        if not self.settings.allow_short and not order.reduce_only:
            after = self.position(order.full_symbol) + self.pending(order.full_symbol) + order.signed_quantity
            if after < -_EPS or (order.side == "sell" and order.fraction is not None):
                return self.reject(order, "broker.short", f"sell would leave position {after:g}; shorting is off (allow_short)")
        self._orders[order.id] = order
        events = [self._order_event(order)]
        # a close goes to the front: at the next bar it exits at the open, before any stop can trigger
        if order.reduce_only:
            self._working.insert(0, order.id)
        else:
            self._working.append(order.id)
        if self.settings.fill_at == "close":
            last = self._last_price.get(order.full_symbol)
            if last is not None:
                price = self._fill_price(order, last, last, last)
                if price is not None:
                    events += self._fill(order, price, self.now or order.created_at, market_ref=order.order_type in ("market", "stop"))
        return self._emit(events)

    def cancel(self, key: int | str, strategy: str | None = None) -> list[Event]:
        """Cancel a working order by id or client id; with ``strategy``, only that strategy's orders.

        Returns the events (none if nothing matched).
        """
        for oid in list(self._working):
            o = self._orders[oid]
            if strategy is not None and o.strategy != strategy:
                continue
            if o.id == key or (isinstance(key, str) and o.client_id == key):
                return self._emit(self._cancel(o, "cancelled by request"))
        return []

    def _cancel(self, o: Order, reason: str) -> list[Event]:
        self._working.remove(o.id)
        o.status, o.reason = "cancelled", reason
        return [self._order_event(o)]

    # ------------------------------------------------------------------ bars
    def handle_bar(self, bar: Bar) -> list[Event]:
        """Fill the working orders this bar reaches, then mark positions to its close.

        Orders placed by fills of this bar (bracket children) are tried on this bar too.
        Returns the events; appends/updates the equity point at ``bar.close_datetime``;
        a margin call (see the module docstring) liquidates after the mark.
        """
        events: list[Event] = []
        sym = bar.full_symbol
        # the bar clock moves first, so fills at this bar land on its equity point, not the previous one
        self.now = bar.close_datetime if self.now is None or bar.close_datetime > self.now else self.now
        day = bar.datetime.astimezone(dt.timezone.utc).date() if bar.datetime.tzinfo else bar.datetime.date()
        tried: set[int] = set()
        while True:
            todo = [oid for oid in self._working if oid not in tried]
            progressed = False
            for oid in todo:
                if oid not in self._working:
                    continue  # cancelled by an earlier fill (a bracket sibling)
                o = self._orders[oid]
                if o.full_symbol != sym or bar.datetime < o.created_at:
                    continue
                if o.interval is not None and o.interval != bar.interval:
                    continue
                tried.add(oid)
                if o.time_in_force == "DAY":
                    if o.session is None:
                        o.session = day
                    elif day > o.session:
                        events += self._cancel(o, f"DAY order expired after {o.session.isoformat()}")
                        continue
                price = self._fill_price(o, bar.open, bar.high, bar.low)
                if price is not None:
                    events += self._fill(o, price, bar.datetime, market_ref=o.order_type in ("market", "stop"))
                    progressed = True
            if not progressed:
                break
        self._last_price[sym] = bar.close
        if self._close_interval.setdefault(sym, bar.interval) == bar.interval:
            self.closes.setdefault(sym, []).append((bar.close_datetime, bar.close))
        pos = self._positions.get(sym)
        if pos is not None:
            pos.last_price = bar.close
            pos.unrealised_pnl = (bar.close - pos.avg_price) * pos.quantity if pos.quantity else 0.0
        self._record_equity()
        events += self._check_margin()
        return self._emit(events)

    # ------------------------------------------------------------------ internals
    def _fill_price(self, o: Order, open_: float, high: float, low: float) -> float | None:
        """The price ``o`` fills at on a bar with this open/high/low, or None; marks a hit stop as triggered."""
        buy = o.side == "buy"
        stop: float | None = None
        if o.order_type in ("stop", "stop_limit") and not o.triggered:
            assert o.stop_price is not None
            if not (high >= o.stop_price if buy else low <= o.stop_price):
                return None
            o.triggered = True
            stop = o.stop_price
        if o.order_type in ("limit", "stop_limit"):
            assert o.limit_price is not None
            lim = o.limit_price
            hit = low <= lim if buy else high >= lim
            # a limit beyond the stop is taken to have traded before the stop: next bar
            if not hit or (stop is not None and (lim <= stop if buy else lim >= stop)):
                return None
            ref = stop if stop is not None else open_
            return min(ref, lim) if buy else max(ref, lim)
        if stop is not None:
            return max(open_, stop) if buy else min(open_, stop)
        return open_

    def _commission(self, qty: float, price: float) -> float:
        s = self.settings
        c = s.commission_per_share * qty + qty * price * (s.commission_bps / 10_000.0)
        if s.min_commission > 0:
            c = max(c, s.min_commission)
        return c

    def _refuse(self, o: Order, rule: str, reason: str) -> list[Event]:
        self._working.remove(o.id)
        o.status, o.rule, o.reason = "rejected", rule, reason
        logger.warning("order {} {} {} rejected at fill by {}: {}", o.client_id or o.id, o.side, o.full_symbol, rule, reason)
        return [self._order_event(o)]

    def _fill(self, o: Order, ref_price: float, when: dt.datetime, market_ref: bool) -> list[Event]:
        s = self.settings
        price = ref_price
        if market_ref and s.slippage_bps:
            factor = s.slippage_bps / 10_000.0
            price = ref_price * (1 + factor) if o.side == "buy" else ref_price * (1 - factor)
        if o.reduce_only:
            held = self.position(o.full_symbol, o.strategy)
            if abs(held) <= _EPS or (held > 0) == (o.side == "buy"):
                return self._cancel(o, "nothing to close: the strategy is flat or on the same side")
            o.quantity = min(o.quantity, abs(held))
        elif o.fraction is not None:
            units = float(int((self.available() * o.fraction) // self._unit_cost(price)))
            if units < 1:
                return self._refuse(o, "broker.margin", f"{o.fraction:.4%} of the available equity {self.available():.2f} "
                                    f"buys no whole unit at {price:g}")
            o.quantity = units
        slip = abs(price - ref_price) * o.quantity
        commission = self._commission(o.quantity, price)
        signed = o.signed_quantity
        held_account = self.position(o.full_symbol)
        reduces = held_account != 0 and (held_account > 0) != (signed > 0) and abs(signed) <= abs(held_account) + _EPS
        if not reduces:
            if not s.allow_margin and signed > 0:
                cost = signed * price + commission
                if self.cash - cost < -_EPS:
                    return self._refuse(o, "broker.cash", f"buy needs {cost:.2f} but cash is {self.cash:.2f}; "
                                        "lower the size or set allow_margin")
            im = s.initial_margin
            free = self.equity() - im * self.gross_exposure()
            need = im * (o.quantity * price + commission)
            if need > free + _EPS:
                return self._refuse(o, "broker.margin", f"{o.side} {o.quantity:g} at {price:g} needs margin {need:.2f} "
                                    f"but free equity is {free:.2f}; lower the size or the initial_margin")
        self._working.remove(o.id)
        self.cash -= signed * price + commission
        self.commission_paid += commission
        pos = self._positions.get(o.full_symbol)
        if pos is None:
            pos = self._positions[o.full_symbol] = Position(full_symbol=o.full_symbol)
        self._apply(pos, signed, price)
        key = (o.strategy, o.full_symbol)
        self._strategy_pos[key] = self._strategy_pos.get(key, 0.0) + signed
        if abs(self._strategy_pos[key]) <= _EPS:
            self._strategy_pos[key] = 0.0
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
            tag=o.tag,
        )
        self._fills.append(fill)
        self._record_equity()
        events = [
            self._order_event(o),
            Event(build_topic(Kind.FILL, o.full_symbol), fill),
            Event(build_topic(Kind.POSITION, o.full_symbol), msgspec.structs.replace(pos)),
        ]
        events += self._settle_brackets(o, when)
        return events

    def _settle_brackets(self, o: Order, when: dt.datetime) -> list[Event]:
        """After ``o`` filled: cancel stale bracket children, then give a bracketed entry its own."""
        events: list[Event] = []
        held = self.position(o.full_symbol, o.strategy)
        for oid in list(self._working):
            c = self._orders[oid]
            if c.parent_id is None or c.strategy != o.strategy or c.full_symbol != o.full_symbol:
                continue
            sibling = o.parent_id is not None and c.parent_id == o.parent_id
            stale = abs(held) <= _EPS or (held > 0) == (c.side == "buy")
            if sibling or stale:
                events += self._cancel(c, "bracket sibling filled" if sibling else "position closed")
        if o.parent_id is None and (o.stop_loss is not None or o.take_profit is not None):
            exit_side: Literal["buy", "sell"] = "sell" if o.side == "buy" else "buy"
            legs = (("sl", "stop", o.stop_loss), ("tp", "limit", o.take_profit))
            for leg, kind, level in legs:
                if level is None:
                    continue
                child = Order(
                    id=self._next_id,
                    full_symbol=o.full_symbol,
                    side=exit_side,
                    quantity=o.quantity,
                    order_type=kind,  # type: ignore[arg-type]
                    # after a market entry the bracket may act on the same bar (it opened at the bar's
                    # open); after a limit/stop entry the path within the bar is unknown: next bar
                    created_at=when if o.order_type == "market" else (self.now or when),
                    limit_price=level if kind == "limit" else None,
                    stop_price=level if kind == "stop" else None,
                    strategy=o.strategy,
                    client_id=f"{o.client_id}.{leg}" if o.client_id else "",
                    interval=o.interval,
                    tag=leg,
                    reduce_only=True,
                    parent_id=o.id,
                )
                self._next_id += 1
                self._orders[child.id] = child
                # the stop-loss is tried before anything else on a bar (pessimistic), the take-profit last
                if leg == "sl":
                    self._working.insert(0, child.id)
                else:
                    self._working.append(child.id)
                events.append(self._order_event(child))
        return events

    def _check_margin(self) -> list[Event]:
        """Liquidate every position when equity is at most zero or below the maintenance margin.

        An account already flat whose equity fell to zero or below (a gap through a close) gets a
        margin call too, once until its equity is positive again: nothing goes below zero silently.
        """
        gross = self.gross_exposure()
        equity = self.equity()
        if gross <= _EPS:
            if equity > 0:
                self._deficit = False
            elif not self._deficit:
                self._deficit = True
                assert self.now is not None
                reason = f"equity {equity:.2f} is at or below zero with no position left"
                logger.warning("margin call at {}: {}", self.now.isoformat(), reason)
                call = MarginCall(datetime=self.now, equity=equity, gross_exposure=0.0, reason=reason)
                self.margin_calls.append(call)
                return [Event("margin.call", call)]
            return []
        floor = self.settings.maintenance_margin * gross
        if equity > 0 and equity >= floor:
            return []
        assert self.now is not None
        reason = (f"equity {equity:.2f} below maintenance margin {floor:.2f} "
                  f"({self.settings.maintenance_margin:g} x gross exposure {gross:.2f}); liquidating")
        logger.warning("margin call at {}: {}", self.now.isoformat(), reason)
        call = MarginCall(datetime=self.now, equity=equity, gross_exposure=gross, reason=reason)
        self.margin_calls.append(call)
        events: list[Event] = [Event("margin.call", call)]
        for oid in list(self._working):
            events += self._cancel(self._orders[oid], "margin call")
        for (strategy, sym), qty in sorted(self._strategy_pos.items()):
            if abs(qty) <= _EPS:
                continue
            o = Order(
                id=self._next_id,
                full_symbol=sym,
                side="sell" if qty > 0 else "buy",
                quantity=abs(qty),
                order_type="market",
                created_at=self.now,
                strategy=strategy,
                client_id=f"margin-call-{self._next_id}",
                tag="margin_call",
                reduce_only=True,
            )
            self._next_id += 1
            self._orders[o.id] = o
            self._working.append(o.id)
            events.append(self._order_event(o))
            events += self._fill(o, self._last_price.get(sym, 0.0), self.now, market_ref=False)
        return events

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
        point = EquityPoint(self.now, self.equity(), self.cash, self.gross_exposure())
        if self.equity_curve and self.equity_curve[-1].datetime == self.now:
            self.equity_curve[-1] = point
        else:
            self.equity_curve.append(point)

    @staticmethod
    def _order_event(o: Order) -> Event:
        return Event(build_topic(Kind.ORDER, o.full_symbol, o.status), msgspec.structs.replace(o))

    def _emit(self, events: list[Event]) -> list[Event]:
        return deliver(events, self.listeners, "broker")
