"""The strategy base class and the context through which a strategy places orders.

A strategy is a plain class: it declares what it needs as class attributes (the host
subscribes and hydrates for it), receives callbacks, and emits order intents through
``self.ctx``. It must be deterministic: the same callbacks in the same order give the same
intents (no wall clock, no unseeded randomness).

Callbacks (all optional): ``on_start()``, ``on_bar(bar)``, ``on_chart(full_symbol, interval, window)``,
``on_mtf(snapshot)``, ``on_news(item)``, ``on_calendar_event(event)``,
``on_order(order)``, ``on_fill(fill)``, ``on_stop()``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar, Protocol

import msgspec

from .orders import Account, Fill, Order, OrderIntent, Side

__all__ = ["StrategyNeeds", "Portfolio", "StrategyContext", "Strategy", "Cancel"]


class StrategyNeeds(msgspec.Struct, frozen=True):
    """What a strategy asks the host for: symbols, intervals, chart window length, alignment groups.

    ``groups`` maps a group name to ``{full_symbol: [interval, ...]}`` for aligned snapshots.
    """

    symbols: tuple[str, ...] = ()
    intervals: tuple[str, ...] = ()
    window: int = 0
    groups: dict[str, dict[str, list[str]]] = {}


class Cancel(msgspec.Struct, frozen=True):
    """A request to cancel a working order by the strategy's client id."""

    client_id: str
    strategy: str = ""


class Portfolio(Protocol):
    """What a context needs to answer position questions (the paper broker satisfies it)."""

    def position(self, full_symbol: str, strategy: str | None = None) -> float: ...

    def account(self) -> Account: ...


class StrategyContext:
    """The strategy's handle for orders and positions.

    Order methods return the client id given to the order: ``<strategy>-<n>``, numbered in
    emission order, so ids are the same run after run. Intents are queued and taken by the
    engine after the callback returns (:meth:`drain`).
    """

    def __init__(self, strategy: str, portfolio: Portfolio | None = None) -> None:
        self.strategy = strategy
        self.portfolio = portfolio
        self.now: dt.datetime | None = None
        self.interval: str | None = None
        self._queue: list[OrderIntent | Cancel] = []
        self._seq = 0

    def _next_id(self) -> str:
        self._seq += 1
        return f"{self.strategy}-{self._seq}"

    def _order(self, full_symbol: str, side: Side | None, quantity: float | None, target: float | None,
               limit: float | None, tag: str) -> str:
        cid = self._next_id()
        intent = OrderIntent(
            full_symbol=full_symbol,
            side=side,
            quantity=None if quantity is None else float(quantity),
            target=None if target is None else float(target),
            order_type="limit" if limit is not None else "market",
            limit_price=None if limit is None else float(limit),
            strategy=self.strategy,
            client_id=cid,
            interval=self.interval,
            tag=tag,
        )
        intent.validate()
        self._queue.append(intent)
        return cid

    def buy(self, full_symbol: str, quantity: float, limit: float | None = None, tag: str = "") -> str:
        """Queue a buy of ``quantity`` (a limit order when ``limit`` is given); returns the client id."""
        return self._order(full_symbol, "buy", quantity, None, limit, tag)

    def sell(self, full_symbol: str, quantity: float, limit: float | None = None, tag: str = "") -> str:
        """Queue a sell of ``quantity`` (a limit order when ``limit`` is given); returns the client id."""
        return self._order(full_symbol, "sell", quantity, None, limit, tag)

    def target_position(self, full_symbol: str, target: float, limit: float | None = None, tag: str = "") -> str:
        """Queue an order that moves this strategy's position in ``full_symbol`` to ``target`` (signed).

        Nothing is sent when the strategy's position plus its working orders already equals the target.
        """
        return self._order(full_symbol, None, None, target, limit, tag)

    def cancel(self, client_id: str) -> None:
        """Queue the cancellation of a working order by client id."""
        self._queue.append(Cancel(client_id, self.strategy))

    def position(self, full_symbol: str) -> float:
        """This strategy's signed position in ``full_symbol`` (0 without a portfolio)."""
        return self.portfolio.position(full_symbol, self.strategy) if self.portfolio is not None else 0.0

    def account_position(self, full_symbol: str) -> float:
        """The account's signed position in ``full_symbol`` (all strategies together)."""
        return self.portfolio.position(full_symbol) if self.portfolio is not None else 0.0

    def account(self) -> Account | None:
        """The account summary, or None without a portfolio."""
        return self.portfolio.account() if self.portfolio is not None else None

    def drain(self) -> list[OrderIntent | Cancel]:
        """Take and clear the queued intents (the engine calls this)."""
        out, self._queue = self._queue, []
        return out


class Strategy:
    """Base class of strategies; override the callbacks you need.

    Class attributes declare the needs; an instance may override them (e.g. ``symbols``
    set from a parameter). ``name`` defaults to the class name in lower case.
    """

    name: ClassVar[str] = ""
    #: True when callbacks may block (network calls, e.g. an LLM): the host then runs the
    #: engine in a worker thread so its event loop and RPC services stay responsive.
    blocking: ClassVar[bool] = False
    symbols: tuple[str, ...] = ()
    intervals: tuple[str, ...] = ()
    window: int = 0
    groups: dict[str, dict[str, list[str]]] = {}

    def __init__(self) -> None:
        self._ctx: StrategyContext | None = None

    @property
    def strategy_name(self) -> str:
        """The name orders and logs carry."""
        return self.name or type(self).__name__.lower()

    @property
    def ctx(self) -> StrategyContext:
        """The bound context; raises when the strategy was not bound to an engine yet."""
        ctx = getattr(self, "_ctx", None)
        if ctx is None:
            raise RuntimeError(
                f"strategy {self.strategy_name!r} has no context: add it to a TradingEngine "
                "(or call bind(StrategyContext(...))) before sending it events"
            )
        return ctx

    def bind(self, ctx: StrategyContext) -> None:
        """Attach the context the strategy places orders through."""
        self._ctx = ctx

    def needs(self) -> StrategyNeeds:
        """The subscriptions this strategy needs (from its attributes)."""
        return StrategyNeeds(
            symbols=tuple(self.symbols),
            intervals=tuple(self.intervals),
            window=int(self.window),
            groups={g: {s: list(iv) for s, iv in m.items()} for g, m in self.groups.items()},
        )

    def wants_bar(self, full_symbol: str, interval: str) -> bool:
        """True when bars of this symbol and interval are for this strategy (empty needs = all)."""
        return (not self.symbols or full_symbol in self.symbols) and (not self.intervals or interval in self.intervals)

    # ------------------------------------------------------------------ callbacks
    def on_start(self) -> None:
        """Called once before the first event."""

    def on_bar(self, bar: Any) -> None:
        """Called with each closed bar of a wanted symbol and interval."""

    def on_chart(self, full_symbol: str, interval: str, window: Any) -> None:
        """Called when a wanted chart window changed (``window`` as the chart flow publishes it)."""

    def on_mtf(self, snapshot: Any) -> None:
        """Called with each aligned snapshot of one of the strategy's groups."""

    def on_news(self, item: Any) -> None:
        """Called with each news item."""

    def on_calendar_event(self, event: Any) -> None:
        """Called with each economic-calendar event."""

    def on_order(self, order: Order) -> None:
        """Called when one of this strategy's orders changed status."""

    def on_fill(self, fill: Fill) -> None:
        """Called when one of this strategy's orders filled."""

    def on_stop(self) -> None:
        """Called once after the last event."""
