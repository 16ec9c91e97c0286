"""The strategy base class and the context through which a strategy places orders.

A strategy is a plain class: it declares what it needs as class attributes (the host
subscribes and hydrates for it), receives callbacks, and emits order intents through
``self.ctx``. It must be deterministic: the same callbacks in the same order give the same
intents (no wall clock, no unseeded randomness).

Callbacks (all optional): ``on_start()``, ``on_bar(bar)``, ``on_chart(full_symbol, interval, window)``,
``on_mtf(snapshot)``, ``on_news(item)``, ``on_calendar_event(event)``, ``on_signal(signal)``,
``on_order(order)``, ``on_fill(fill)``, ``on_stop()``.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any, ClassVar, Protocol

import msgspec

from .orders import Account, Fill, Order, OrderIntent, Side, TimeInForce, parse_size

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

    def _order(self, full_symbol: str, side: Side | None, size: float | str | None, target: float | None,
               limit: float | None, tag: str, *, stop: float | None = None, stop_loss: float | None = None,
               take_profit: float | None = None, tif: TimeInForce = "GTC", reduce_only: bool = False) -> str:
        cid = self._next_id()
        units, fraction = parse_size(size) if size is not None else (None, None)
        kind = {(False, False): "market", (True, False): "limit", (False, True): "stop", (True, True): "stop_limit"}
        intent = OrderIntent(
            full_symbol=full_symbol,
            side=side,
            quantity=units,
            fraction=fraction,
            target=None if target is None else float(target),
            order_type=kind[(limit is not None, stop is not None)],  # type: ignore[arg-type]
            limit_price=None if limit is None else float(limit),
            stop_price=None if stop is None else float(stop),
            strategy=self.strategy,
            client_id=cid,
            interval=self.interval,
            tag=tag,
            time_in_force=tif,
            stop_loss=None if stop_loss is None else float(stop_loss),
            take_profit=None if take_profit is None else float(take_profit),
            reduce_only=reduce_only,
        )
        intent.validate()
        self._queue.append(intent)
        return cid

    def buy(self, full_symbol: str, quantity: float | str, limit: float | None = None, tag: str = "", *,
            stop: float | None = None, stop_loss: float | None = None, take_profit: float | None = None,
            tif: TimeInForce = "GTC") -> str:
        """Queue a buy; returns the client id.

        ``quantity`` is a number of units (``50``) or a share of the available equity
        (``"99.99%"``), resolved into whole units at the fill price. ``limit`` makes it a limit
        order, ``stop`` a stop order, both a stop-limit. ``stop_loss``/``take_profit`` attach a
        bracket that closes the filled quantity. ``tif`` is ``"GTC"`` or ``"DAY"``.
        """
        return self._order(full_symbol, "buy", quantity, None, limit, tag, stop=stop, stop_loss=stop_loss,
                           take_profit=take_profit, tif=tif)

    def sell(self, full_symbol: str, quantity: float | str, limit: float | None = None, tag: str = "", *,
             stop: float | None = None, stop_loss: float | None = None, take_profit: float | None = None,
             tif: TimeInForce = "GTC") -> str:
        """Queue a sell (short when flat); the arguments are those of :meth:`buy`. Returns the client id."""
        return self._order(full_symbol, "sell", quantity, None, limit, tag, stop=stop, stop_loss=stop_loss,
                           take_profit=take_profit, tif=tif)

    def target_position(self, full_symbol: str, target: float, limit: float | None = None, tag: str = "") -> str:
        """Queue an order that moves this strategy's position in ``full_symbol`` to ``target`` (signed).

        Nothing is sent when the strategy's position plus its working orders already equals the target.
        A target on the other side of zero is a close then an open (the broker splits it).
        """
        return self._order(full_symbol, None, None, target, limit, tag)

    def close(self, full_symbol: str, tag: str = "exit") -> str | None:
        """Queue a reduce-only market order closing this strategy's position; None when it holds nothing.

        At fill time it closes what is held then (nothing if a stop-loss got there first).
        """
        held = self.position(full_symbol)
        if held == 0:
            return None
        return self._order(full_symbol, "sell" if held > 0 else "buy", abs(held), None, None, tag, reduce_only=True)

    def hold(self, full_symbol: str, direction: int, size: float | str, tag: str = "", *,
             stop_loss: float | None = None, take_profit: float | None = None) -> None:
        """Be long (``direction`` +1), short (-1) or flat (0) in ``full_symbol`` with ``size`` per position.

        With a size in units and no bracket this is :meth:`target_position` (``direction * units``).
        Otherwise (a share of equity such as ``"99.99%"``, or ``stop_loss``/``take_profit`` prices
        to attach to the entry) an opposite position is closed (:meth:`close`) and the new one
        opened with a market order (a share of equity is sized at its fill); nothing is sent when
        the strategy already holds that side. Use it on signal changes: an entry still waiting to
        fill is not seen as held on this path.
        """
        units, _ = parse_size(size)
        if units is not None and stop_loss is None and take_profit is None:
            self.target_position(full_symbol, direction * units, tag=tag)
            return
        held = self.position(full_symbol)
        if held != 0 and (direction == 0 or (held > 0) != (direction > 0)):
            self.close(full_symbol, tag="exit")
        if direction != 0 and (held == 0 or (held > 0) != (direction > 0)):
            (self.buy if direction > 0 else self.sell)(full_symbol, size, tag=tag, stop_loss=stop_loss,
                                                       take_profit=take_profit)

    def size_for_risk(self, full_symbol: str, stop_distance: float, risk: float | str) -> float:
        """Whole units such that a move of ``stop_distance`` against the position loses at most ``risk`` of equity.

        ``risk`` is a fraction (``0.01``) or a percentage (``"1%"``). Returns 0 without an account.
        :raises ValueError: when the stop distance is not positive or the risk not in (0, 1].
        """
        if not (math.isfinite(stop_distance) and stop_distance > 0):
            raise ValueError(f"size_for_risk({full_symbol}): stop_distance must be a positive price distance, got {stop_distance!r}")
        share = parse_size(risk)[1] if isinstance(risk, str) else float(risk)
        if share is None or not (0 < share <= 1):
            raise ValueError(f"size_for_risk({full_symbol}): risk must be in (0, 1] or a percentage, got {risk!r}")
        acct = self.account()
        if acct is None or acct.equity <= 0:
            return 0.0
        return float(math.floor(acct.equity * share / stop_distance))

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

    def wants_signal(self, signal: Any) -> bool:
        """True when *signal* is about one of this strategy's symbols, is market-wide (``*``), or it names none."""
        fs = getattr(signal, "full_symbol", "*")
        return not self.symbols or fs == "*" or fs in self.symbols

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

    def on_signal(self, signal: Any) -> None:
        """Called with each signal (``aitrados.signals.Signal``) about a wanted symbol.

        In a replay a signal computed by a signal module (a ``SignalModule`` plugin) comes in the
        step of the event that caused it: just before that bar's ``on_bar``, just after that news
        item's ``on_news`` or calendar event's ``on_calendar_event``, in the same order in-process
        and isolated (docs/signals.md, "Strategies and the step guarantee").
        """

    def on_order(self, order: Order) -> None:
        """Called when one of this strategy's orders changed status."""

    def on_fill(self, fill: Fill) -> None:
        """Called when one of this strategy's orders filled."""

    def on_stop(self) -> None:
        """Called once after the last event."""

    def state(self) -> dict[str, Any]:
        """What this strategy wants to show about itself (the dashboard, ``trading.strategy_state``).

        Override it to return plain data (numbers, strings, lists, dicts); these keys have a
        meaning, anything else is shown as is:

        * ``indicators``: ``{name: value}`` of price-scaled values, drawn as lines over the candles
          (moving averages, bands); ``None`` while warming up;
        * ``signal``: the last signal or wanted position;
        * ``reason``: a short sentence saying why.

        Called from the trading loop between events, so it sees a consistent state; keep it cheap.
        :returns: the state, ``{}`` by default.
        """
        return {}
