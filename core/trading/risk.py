"""The risk engine: every order passes here between a strategy and the broker.

Pure logic, no I/O. Built-in rules run first, in this order, and the first to object
rejects the order:

1. ``kill_switch`` — while tripped, every new order is rejected (nothing crashes; trip
   and reset at run time with :meth:`RiskEngine.trip` / :meth:`RiskEngine.reset`).
2. ``symbol`` — an empty symbol, or one with no price seen yet (unknown to the feed), is
   rejected, whatever the order type.
3. ``order_size`` — bounds that hold by default: a quantity above ``max_order_quantity``,
   or an order that opens or adds exposure worth more than ``max_order_equity_multiple``
   times the equity (any such order once equity is at or below zero).
4. ``max_order_notional`` — ``quantity * price`` of one order above the limit.
   Orders are valued at their worst case (:func:`order_value_price`): a buy at its limit
   (it cannot pay more), else at the higher of the last price and its stop; a sell at the
   highest of the last price, its limit and its stop (a sell limit far below the market
   fills at the market).
5. ``max_position`` — the absolute position the order would leave (current position plus
   working orders plus this one) above the symbol's limit; orders that reduce the
   absolute position always pass.
6. ``max_orders`` — more than ``max_orders`` accepted orders within the last
   ``orders_window_seconds`` of the bar clock (not the wall clock, so replay is
   deterministic).
7. ``daily_loss`` — once today's loss (equity now minus the last equity observed before
   the UTC day began) reaches the limit, orders that increase the absolute position are rejected
   until the next UTC day; closing orders still pass.

Then the external checks (the ``check_order`` plugin hooks, passed in as callables) run in
order; the first one that returns something other than None decides. A rule or check
that raises rejects the order (fail closed) and the reason names it. When nobody
objects the order is approved by rule ``default``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import deque
from collections.abc import Callable
from typing import Any

import msgspec
from loguru import logger

from .orders import Order
from .settings import RiskLimits

__all__ = ["RiskLimits", "RiskContext", "RiskDecision", "RiskCheck", "RiskEngine", "order_value_price"]


def order_value_price(order: Order, last: float) -> float:
    """The worst-case price to value ``order`` at (see the module docstring); NaN when nothing is known."""
    known = [p for p in (last, order.limit_price, order.stop_price) if p is not None and math.isfinite(p)]
    if order.side == "buy":
        if order.limit_price is not None:
            return order.limit_price
        known = [p for p in (last, order.stop_price) if p is not None and math.isfinite(p)]
    return max(known) if known else math.nan


def _increases(order: Order, ctx: "RiskContext") -> bool:
    """True when ``order`` opens or adds exposure (anything but a pure reduction of the position)."""
    before = ctx.position + ctx.pending
    after = before + order.signed_quantity
    return not (abs(after) < abs(before) and (after == 0 or (after > 0) == (before > 0)))


class RiskContext(msgspec.Struct, frozen=True):
    """What a rule may look at besides the order.

    ``position`` is the current signed position in the order's symbol, ``pending`` the
    signed quantity of its working orders, ``price`` the last price (for notional),
    ``equity`` the account equity now and ``now`` the bar-clock time.
    """

    now: dt.datetime
    position: float
    price: float
    equity: float
    pending: float = 0.0


class RiskDecision(msgspec.Struct, frozen=True):
    """The verdict on one order: approved or not, by which rule, and why."""

    approved: bool
    rule: str
    reason: str = ""

    @classmethod
    def approve(cls, rule: str, reason: str = "") -> "RiskDecision":
        """An approval by ``rule``."""
        return cls(True, rule, reason)

    @classmethod
    def reject(cls, rule: str, reason: str) -> "RiskDecision":
        """A rejection by ``rule`` with a reason a user can act on."""
        return cls(False, rule, reason)


#: An external check: ``(order, context) -> RiskDecision | bool | str | None``.
#: None = no opinion; True = approve; False = reject; a string = reject with that reason.
RiskCheck = Callable[[Order, RiskContext], Any]


class RiskEngine:
    """Built-in rules plus external checks; see the module docstring for the order of evaluation."""

    def __init__(self, limits: RiskLimits | None = None, checks: list[RiskCheck] | None = None) -> None:
        self.limits = limits or RiskLimits()
        self._checks: list[tuple[str, RiskCheck]] = []
        for fn in checks or []:
            self.add_check(fn)
        self._kill_reason: str | None = None
        self._accepted_times: deque[dt.datetime] = deque()
        self._day: dt.date | None = None
        self._day_start_equity: float | None = None
        self._last_equity: float | None = None

    # ------------------------------------------------------------------ configuration
    def add_check(self, fn: RiskCheck, name: str | None = None) -> None:
        """Append an external check; ``name`` (default: the callable's qualified name) appears in decisions."""
        if not callable(fn):
            raise TypeError(f"risk check {fn!r} is not callable; pass a function (order, context) -> decision")
        label = name or getattr(fn, "__qualname__", None) or repr(fn)
        self._checks.append((label, fn))

    @property
    def checks(self) -> list[tuple[str, RiskCheck]]:
        """The external checks as (name, callable), in call order."""
        return list(self._checks)

    # ------------------------------------------------------------------ kill switch
    def trip(self, reason: str = "tripped by operator") -> None:
        """Trip the kill switch: every new order is rejected until :meth:`reset`."""
        self._kill_reason = reason or "tripped by operator"
        logger.warning("risk kill switch tripped: {}", self._kill_reason)

    def reset(self) -> None:
        """Reset the kill switch: new orders are checked normally again."""
        if self._kill_reason is not None:
            logger.info("risk kill switch reset")
        self._kill_reason = None

    @property
    def tripped(self) -> bool:
        """True while the kill switch is tripped."""
        return self._kill_reason is not None

    def state(self) -> dict[str, Any]:
        """Plain-data status for RPC/CLI: kill switch, limits, day start equity, recent order count."""
        return {
            "kill_switch": self.tripped,
            "kill_reason": self._kill_reason,
            "limits": self.limits.model_dump(),
            "day": self._day.isoformat() if self._day else None,
            "day_start_equity": self._day_start_equity,
            "recent_orders": len(self._accepted_times),
        }

    # ------------------------------------------------------------------ clock
    def observe(self, now: dt.datetime, equity: float) -> None:
        """Tell the engine the bar clock and equity; the day's start equity is the last one seen before its first bar."""
        day = now.astimezone(dt.timezone.utc).date() if now.tzinfo else now.date()
        if day != self._day:
            self._day = day
            # the day starts from the last equity seen before it (the previous close), so a
            # loss made by the day's first bar counts too; the very first day starts here
            self._day_start_equity = self._last_equity if self._last_equity is not None else equity
        self._last_equity = equity

    def day_pnl(self, equity: float) -> float:
        """Equity change since the first observation of the current UTC day (0 before any)."""
        if self._day_start_equity is None:
            return 0.0
        return equity - self._day_start_equity

    # ------------------------------------------------------------------ decision
    def check(self, order: Order, ctx: RiskContext) -> RiskDecision:
        """Decide on ``order``; an approval is counted for ``max_orders``."""
        decision = self._decide(order, ctx)
        if decision.approved:
            self._accepted_times.append(ctx.now)
        return decision

    def _decide(self, order: Order, ctx: RiskContext) -> RiskDecision:
        builtins: tuple[tuple[str, Callable[[Order, RiskContext], RiskDecision | None]], ...] = (
            ("kill_switch", self._rule_kill_switch),
            ("symbol", self._rule_symbol),
            ("order_size", self._rule_size),
            ("max_order_notional", self._rule_notional),
            ("max_position", self._rule_position),
            ("max_orders", self._rule_rate),
            ("daily_loss", self._rule_daily_loss),
        )
        for name, rule in builtins:
            try:
                verdict = rule(order, ctx)
            except Exception as exc:  # fail closed
                logger.exception("risk rule {} raised on order {}", name, order.client_id or order.id)
                return RiskDecision.reject(name, f"rule {name} raised {type(exc).__name__}: {exc} (fail closed)")
            if verdict is not None:
                return verdict
        for name, fn in self._checks:
            try:
                raw = fn(order, ctx)
            except Exception as exc:  # fail closed
                logger.exception("risk check {} raised on order {}", name, order.client_id or order.id)
                return RiskDecision.reject(name, f"check {name} raised {type(exc).__name__}: {exc} (fail closed)")
            if raw is None:
                continue
            return self._interpret(name, raw)
        return RiskDecision.approve("default", "no rule objected")

    @staticmethod
    def _interpret(name: str, raw: Any) -> RiskDecision:
        if isinstance(raw, RiskDecision):
            return raw
        if isinstance(raw, bool):
            return RiskDecision(raw, name, "approved by check" if raw else "rejected by check")
        if isinstance(raw, str):
            return RiskDecision.reject(name, raw)
        return RiskDecision.reject(
            name,
            f"check {name} returned {type(raw).__name__}; expected RiskDecision, bool, str or None (fail closed)",
        )

    # ------------------------------------------------------------------ built-in rules
    def _rule_kill_switch(self, order: Order, ctx: RiskContext) -> RiskDecision | None:
        if self._kill_reason is None:
            return None
        return RiskDecision.reject(
            "kill_switch", f"kill switch is tripped ({self._kill_reason}); reset it to resume new orders"
        )

    def _rule_symbol(self, order: Order, ctx: RiskContext) -> RiskDecision | None:
        if not order.full_symbol.strip():
            return RiskDecision.reject("symbol", "the order has no symbol")
        if not (math.isfinite(ctx.price) and ctx.price > 0):
            return RiskDecision.reject(
                "symbol", f"unknown symbol {order.full_symbol}: no price seen for it yet (not in the feed?)"
            )
        return None

    def _rule_size(self, order: Order, ctx: RiskContext) -> RiskDecision | None:
        qmax = self.limits.max_order_quantity
        if qmax is not None and order.quantity > qmax:
            return RiskDecision.reject("order_size", f"quantity {order.quantity:g} exceeds max_order_quantity {qmax:g}")
        k = self.limits.max_order_equity_multiple
        if k is None or not _increases(order, ctx):
            return None
        notional = order.quantity * order_value_price(order, ctx.price)
        if ctx.equity <= 0:
            return RiskDecision.reject("order_size", f"equity is {ctx.equity:.2f}: no order may add exposure")
        if notional > k * ctx.equity:
            return RiskDecision.reject(
                "order_size",
                f"order worth {notional:.2f} exceeds max_order_equity_multiple {k:g} x equity {ctx.equity:.2f}",
            )
        return None

    def _rule_notional(self, order: Order, ctx: RiskContext) -> RiskDecision | None:
        limit = self.limits.max_order_notional
        if limit is None:
            return None
        price = order_value_price(order, ctx.price)
        if not math.isfinite(price) or price <= 0:
            return RiskDecision.reject("max_order_notional", f"no usable price for {order.full_symbol} to value the order")
        notional = order.quantity * price
        if notional > limit:
            return RiskDecision.reject(
                "max_order_notional",
                f"order notional {notional:.2f} (valued at {price:g}) exceeds max_order_notional {limit:.2f}",
            )
        return None

    def _position_limit(self, full_symbol: str) -> float | None:
        return self.limits.max_position_by_symbol.get(full_symbol, self.limits.max_position)

    def _rule_position(self, order: Order, ctx: RiskContext) -> RiskDecision | None:
        limit = self._position_limit(order.full_symbol)
        if limit is None:
            return None
        before = ctx.position + ctx.pending
        after = before + order.signed_quantity
        reduces = abs(after) < abs(before) and (after == 0 or (after > 0) == (before > 0))
        if abs(after) <= limit + 1e-9 or reduces:
            return None
        return RiskDecision.reject(
            "max_position",
            f"position in {order.full_symbol} would be {after:g}, beyond max_position {limit:g}",
        )

    def _rule_rate(self, order: Order, ctx: RiskContext) -> RiskDecision | None:
        limit = self.limits.max_orders
        if limit is None:
            return None
        horizon = ctx.now - dt.timedelta(seconds=self.limits.orders_window_seconds)
        times = self._accepted_times
        while times and times[0] <= horizon:
            times.popleft()
        if len(times) >= limit:
            return RiskDecision.reject(
                "max_orders",
                f"{len(times)} orders already accepted in the last {self.limits.orders_window_seconds:g} s "
                f"(max_orders {limit})",
            )
        return None

    def _rule_daily_loss(self, order: Order, ctx: RiskContext) -> RiskDecision | None:
        limit = self.limits.daily_loss_limit
        if limit is None:
            return None
        pnl = self.day_pnl(ctx.equity)
        if pnl > -limit:
            return None
        if not _increases(order, ctx):
            return None  # reduces exposure without flipping
        return RiskDecision.reject(
            "daily_loss",
            f"today's loss {-pnl:.2f} reached daily_loss_limit {limit:.2f}; only closing orders until the next day",
        )
