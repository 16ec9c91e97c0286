"""Typed trading records: order intents, orders, fills, positions, the account and broker events.

All are ``msgspec`` Structs, so they encode to msgpack/JSON for the bus without pickle.
Quantities are in units (shares, contracts, coins); a position's quantity is signed
(negative = short); an order's quantity is always positive and its ``side`` says the
direction. Timestamps are the bar/replay clock (tz-aware UTC), never the wall clock.
"""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal, InvalidOperation
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
    "MarginCall",
    "TimeInForce",
    "parse_size",
]

Side = Literal["buy", "sell"]
OrderType = Literal["market", "limit", "stop", "stop_limit"]
OrderStatus = Literal["accepted", "rejected", "filled", "cancelled"]
#: ``GTC`` works until filled or cancelled; ``DAY`` expires after the last bar of the first
#: (UTC) day on which it could trade.
TimeInForce = Literal["GTC", "DAY"]


def parse_size(size: float | int | str) -> tuple[float | None, float | None]:
    """Read an order size: a number of units (``50``) or a share of equity (``"99.99%"``).

    Returns ``(units, None)`` or ``(None, fraction)`` with ``fraction`` in (0, 1] (``"99.99%"`` ->
    0.9999, the nearest double to the decimal, as backtesting.py's ``size=0.9999``).
    :raises ValueError: when the size is not a positive finite number or a percentage in (0, 100].
    """
    if isinstance(size, str):
        text = size.strip()
        if not text.endswith("%"):
            try:
                return parse_size(float(text))
            except ValueError:
                raise ValueError(f"size {size!r}: give a number of units (50) or a percentage of equity ('99.99%')") from None
        try:
            pct = Decimal(text[:-1].strip())
        except InvalidOperation:
            raise ValueError(f"size {size!r}: the percentage is not a number; e.g. '99.99%'") from None
        if not (pct.is_finite() and 0 < pct <= 100):
            raise ValueError(f"size {size!r}: a percentage of equity must be in (0, 100]")
        return None, float(pct / 100)
    if isinstance(size, bool) or not isinstance(size, (int, float)):
        raise ValueError(f"size {size!r}: give a number of units (50) or a percentage of equity ('99.99%')")
    units = float(size)
    if not (math.isfinite(units) and units > 0):
        raise ValueError(f"size {size!r}: units must be a positive finite number")
    return units, None


class OrderIntent(msgspec.Struct, frozen=True):
    """What a strategy wants: buy/sell a quantity or a share of equity, or move to a target position.

    Exactly one of ``quantity`` (positive units, with ``side``), ``fraction`` (share of the
    available equity in (0, 1], with ``side``; resolved into whole units at fill time at the
    fill price) and ``target`` (signed position to reach; ``side`` is then derived) is set.
    ``limit_price`` makes it a limit order, ``stop_price`` a stop order, both a stop-limit.
    ``stop_loss``/``take_profit`` attach a bracket: once the entry fills, a stop and a limit
    order close it (one cancels the other). ``reduce_only`` orders only close what the
    strategy holds in the other direction (cut to it at fill time, cancelled when flat).
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
    fraction: float | None = None
    stop_price: float | None = None
    time_in_force: TimeInForce = "GTC"
    stop_loss: float | None = None
    take_profit: float | None = None
    reduce_only: bool = False

    def validate(self) -> None:
        """Raise ValueError saying what is wrong when the intent is inconsistent."""
        what = f"order intent {self.client_id or '?'} for {self.full_symbol!r}"
        if not isinstance(self.full_symbol, str) or not self.full_symbol.strip():
            raise ValueError(f"{what}: full_symbol is empty; give ASSET:COUNTRY:SYMBOL")
        given = [n for n in ("quantity", "fraction", "target") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(f"{what}: give exactly one of quantity or fraction (with side) or target position")
        if self.target is None:
            if self.side not in ("buy", "sell"):
                raise ValueError(f"{what}: side must be 'buy' or 'sell' with a {given[0]}, got {self.side!r}")
        if self.quantity is not None and not (math.isfinite(self.quantity) and self.quantity > 0):
            raise ValueError(f"{what}: quantity must be a positive finite number, got {self.quantity!r}")
        if self.fraction is not None and not (math.isfinite(self.fraction) and 0 < self.fraction <= 1):
            raise ValueError(f"{what}: fraction of equity must be in (0, 1], got {self.fraction!r}")
        if self.target is not None and not math.isfinite(self.target):
            raise ValueError(f"{what}: target position must be finite, got {self.target!r}")
        needs = {"market": (False, False), "limit": (True, False), "stop": (False, True), "stop_limit": (True, True)}
        if self.order_type not in needs:
            raise ValueError(f"{what}: order_type must be one of {', '.join(needs)}, got {self.order_type!r}")
        want_limit, want_stop = needs[self.order_type]
        for name, want in (("limit_price", want_limit), ("stop_price", want_stop)):
            value = getattr(self, name)
            if want and (value is None or not (math.isfinite(value) and value > 0)):
                raise ValueError(f"{what}: a {self.order_type} order needs a positive {name}, got {value!r}")
            if not want and value is not None:
                raise ValueError(f"{what}: a {self.order_type} order takes no {name}")
        if self.time_in_force not in ("GTC", "DAY"):
            raise ValueError(f"{what}: time_in_force must be 'GTC' or 'DAY', got {self.time_in_force!r}")
        for name in ("stop_loss", "take_profit"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"{what}: {name} must be a positive price, got {value!r}")
        if (self.stop_loss is not None or self.take_profit is not None) and (self.target is not None or self.reduce_only):
            raise ValueError(f"{what}: stop_loss/take_profit attach to an entry given by quantity or fraction with a side")
        ref = self.limit_price or self.stop_price
        lo, hi = (self.stop_loss, self.take_profit) if self.side == "buy" else (self.take_profit, self.stop_loss)
        if lo is not None and hi is not None and not lo < hi:
            raise ValueError(f"{what}: a {self.side} bracket needs {'stop_loss < take_profit' if self.side == 'buy' else 'take_profit < stop_loss'}")
        if ref is not None and not ((lo is None or lo < ref) and (hi is None or ref < hi)):
            raise ValueError(f"{what}: the bracket must lie on both sides of the entry price {ref:g}")


class Order(msgspec.Struct):
    """An order as the execution side sees it: a resolved intent plus its state.

    ``status`` is ``accepted`` (working), ``rejected`` (``rule`` and ``reason`` say by what
    and why), ``filled`` or ``cancelled``. ``created_at`` is the bar-clock time it was
    submitted (the close time of the bar the strategy reacted to). For a ``fraction`` order
    ``quantity`` is an estimate at the last price until the fill fixes it. ``parent_id`` is
    the entry of a bracket's stop-loss/take-profit child; ``triggered`` says a stop was hit
    (a stop-limit then works as a limit); ``session`` is the UTC day a ``DAY`` order trades.
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
    fraction: float | None = None
    stop_price: float | None = None
    time_in_force: TimeInForce = "GTC"
    stop_loss: float | None = None
    take_profit: float | None = None
    reduce_only: bool = False
    parent_id: int | None = None
    triggered: bool = False
    session: dt.date | None = None

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
    tag: str = ""

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


class MarginCall(msgspec.Struct, frozen=True):
    """A forced liquidation: equity fell to ``equity`` against ``gross_exposure`` (below the maintenance margin)."""

    datetime: dt.datetime
    equity: float
    gross_exposure: float
    reason: str


class Event(msgspec.Struct, frozen=True):
    """Something the execution side did, with the bus topic it is published on.

    Topics: ``order.<status>.<full_symbol>`` (accepted, rejected, filled, cancelled),
    ``fill.<full_symbol>``, ``position.<full_symbol>``, ``margin.call``.
    """

    topic: str
    payload: Order | Fill | Position | MarginCall
