"""Typed trading records: order intents, orders, fills, positions, the account and broker events.

All are ``msgspec`` Structs, so they encode to msgpack/JSON for the bus without pickle.
Quantities are in units (shares, contracts, coins); a position's quantity is signed
(negative = short); an order's quantity is always positive and its ``side`` says the
direction. Timestamps are the bar/replay clock (tz-aware UTC), never the wall clock.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Literal

import msgspec

__all__ = [
    "Side",
    "OrderType",
    "OrderStatus",
    "OrderIntent",
    "Order",
    "Fill",
    "Position",
    "Account",
    "Event",
]

Side = Literal["buy", "sell"]
OrderType = Literal["market", "limit"]
OrderStatus = Literal["accepted", "rejected", "filled", "cancelled"]


class OrderIntent(msgspec.Struct, frozen=True):
    """What a strategy wants: buy/sell a quantity, or move to a target position.

    Exactly one of ``quantity`` (positive, with ``side``) and ``target`` (signed position
    to reach; ``side`` is then derived) is set. ``limit_price`` makes it a limit order.
    ``client_id`` is the strategy's own id for the order (deterministic, see
    :class:`aitrados.trading.strategy.StrategyContext`). ``interval`` is the interval of the
    bar the strategy reacted to: a pending market order fills on the next bar of that interval.
    """

    full_symbol: str
    side: Side | None = None
    quantity: float | None = None
    target: float | None = None
    order_type: OrderType = "market"
    limit_price: float | None = None
    strategy: str = ""
    client_id: str = ""
    interval: str | None = None
    tag: str = ""

    def validate(self) -> None:
        """Raise ValueError saying what is wrong when the intent is inconsistent."""
        what = f"order intent {self.client_id or '?'} for {self.full_symbol!r}"
        if (self.quantity is None) == (self.target is None):
            raise ValueError(f"{what}: give exactly one of quantity (with side) or target position")
        if self.quantity is not None:
            if self.side not in ("buy", "sell"):
                raise ValueError(f"{what}: side must be 'buy' or 'sell' with a quantity, got {self.side!r}")
            if not (math.isfinite(self.quantity) and self.quantity > 0):
                raise ValueError(f"{what}: quantity must be a positive finite number, got {self.quantity!r}")
        if self.target is not None and not math.isfinite(self.target):
            raise ValueError(f"{what}: target position must be finite, got {self.target!r}")
        if self.order_type == "limit":
            if self.limit_price is None or not (math.isfinite(self.limit_price) and self.limit_price > 0):
                raise ValueError(f"{what}: a limit order needs a positive limit_price, got {self.limit_price!r}")
        elif self.order_type == "market":
            if self.limit_price is not None:
                raise ValueError(f"{what}: a market order takes no limit_price; use order_type='limit'")
        else:
            raise ValueError(f"{what}: order_type must be 'market' or 'limit', got {self.order_type!r}")


class Order(msgspec.Struct):
    """An order as the execution side sees it: a resolved intent plus its state.

    ``status`` is ``accepted`` (working), ``rejected`` (``rule`` and ``reason`` say by what
    and why), ``filled`` or ``cancelled``. ``created_at`` is the bar-clock time it was
    submitted (the close time of the bar the strategy reacted to).
    """

    id: int
    full_symbol: str
    side: Side
    quantity: float
    order_type: OrderType
    created_at: dt.datetime
    limit_price: float | None = None
    strategy: str = ""
    client_id: str = ""
    interval: str | None = None
    tag: str = ""
    status: OrderStatus = "accepted"
    rule: str = ""
    reason: str = ""
    filled_at: dt.datetime | None = None
    fill_price: float | None = None

    @property
    def signed_quantity(self) -> float:
        """Quantity with the sign of the side (+ buy, - sell)."""
        return self.quantity if self.side == "buy" else -self.quantity


class Fill(msgspec.Struct, frozen=True):
    """One execution: ``price`` includes slippage; ``commission`` is charged on top."""

    order_id: int
    full_symbol: str
    side: Side
    quantity: float
    price: float
    commission: float
    datetime: dt.datetime
    strategy: str = ""
    client_id: str = ""
    slippage: float = 0.0

    @property
    def signed_quantity(self) -> float:
        """Quantity with the sign of the side (+ buy, - sell)."""
        return self.quantity if self.side == "buy" else -self.quantity


class Position(msgspec.Struct):
    """A position in one symbol: signed quantity, average entry price and PnL.

    ``realised_pnl`` is price PnL of closed quantity (commissions excluded; the account
    holds them); ``unrealised_pnl`` is ``(last_price - avg_price) * quantity``.
    """

    full_symbol: str
    quantity: float = 0.0
    avg_price: float = 0.0
    realised_pnl: float = 0.0
    unrealised_pnl: float = 0.0
    last_price: float | None = None
    commission: float = 0.0


class Account(msgspec.Struct):
    """Account summary: ``equity = cash + sum(quantity * last_price)``.

    ``realised_pnl`` and ``unrealised_pnl`` are sums over positions (before commission);
    ``commission`` is the total paid; ``gross_exposure`` is ``sum(|quantity| * last_price)``.
    """

    cash: float
    equity: float
    initial_cash: float
    realised_pnl: float
    unrealised_pnl: float
    commission: float
    gross_exposure: float
    datetime: dt.datetime | None = None


class Event(msgspec.Struct, frozen=True):
    """Something the execution side did, with the bus topic it is published on.

    Topics: ``order.<status>.<full_symbol>`` (accepted, rejected, filled, cancelled),
    ``fill.<full_symbol>``, ``position.<full_symbol>``.
    """

    topic: str
    payload: Order | Fill | Position
