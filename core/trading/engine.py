"""The trading loop without I/O: events in, strategies, risk, paper broker, events out.

:class:`TradingEngine` is what the host calls for each bar, snapshot, news item and
calendar event (in replay and live alike); a backtest is :meth:`TradingEngine.run` over a
sequence of bars. Per bar it (1) lets the broker fill working orders at this bar and mark
to its close, (2) tells the risk engine the bar clock and equity, (3) calls the
strategies that want the bar, and (4) turns their intents into orders: resolve, risk
check, accept or reject. Every resulting event goes back to the caller (and to
``listeners``) for publishing on ``order.*``, ``fill.*``, ``position.*``.

A strategy callback that raises is logged with the strategy's name and counted in
``errors``; the loop goes on. Everything is ordered, so the same inputs give the same
events.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from loguru import logger

from aitrados.marketdata.models import (
    Bar,
    CalendarEvent,
    NewsItem,
    bar_from_record,
    event_from_record,
    news_from_record,
    parse_timestamp,
)

from .broker import PaperBroker, deliver
from .orders import Event, Fill, Order, OrderIntent
from .risk import RiskContext, RiskEngine
from .strategy import Cancel, Strategy, StrategyContext

__all__ = ["TradingEngine", "snapshot_from_record"]

_MAX_ROUNDS = 8  # bounded re-entry: on_fill/on_order may place orders that fill at once


class TradingEngine:
    """Strategies + risk engine + paper broker, driven by market events."""

    def __init__(
        self,
        strategies: Iterable[Strategy],
        broker: PaperBroker | None = None,
        risk: RiskEngine | None = None,
        listeners: list[Callable[[Event], None]] | None = None,
    ) -> None:
        self.broker = broker or PaperBroker()
        self.risk = risk or RiskEngine()
        self.strategies: list[Strategy] = list(strategies)
        names = [s.strategy_name for s in self.strategies]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"strategy names must be unique in one engine; duplicated: {', '.join(dupes)} (set `name`)")
        self._by_name = {s.strategy_name: s for s in self.strategies}
        for s in self.strategies:
            s.bind(StrategyContext(s.strategy_name, self.broker))
        self.listeners = list(listeners or [])
        self.events: list[Event] = []
        self.errors: list[str] = []
        self._started = False
        self.bars_seen = 0
        self._depth = 0

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Call every strategy's ``on_start`` once."""
        if self._started:
            return
        self._started = True
        for s in self.strategies:
            self._call(s, "on_start")

    def stop(self) -> list[Event]:
        """Call every strategy's ``on_stop`` (orders placed there are processed) and return the events."""
        out: list[Event] = []
        for s in self.strategies:
            out += self._call(s, "on_stop")
        return out

    def run(self, bars: Iterable[Bar]) -> list[Event]:
        """Replay ``bars`` in order through the whole loop; returns all events of the run."""
        self.start()
        out: list[Event] = []
        for bar in bars:
            out += self.on_bar(bar)
        out += self.stop()
        return out

    # ------------------------------------------------------------------ inputs
    def on_bar(self, bar: Bar | Mapping[str, Any]) -> list[Event]:
        """Process one closed bar (a Bar or its protocol record); returns the events it caused."""
        if isinstance(bar, Mapping):
            bar = bar_from_record(bar)
        if not bar.closed:
            return []  # live, still-forming bars do not drive orders or fills
        self.start()
        self.bars_seen += 1
        out = self._publish(self.broker.on_bar(bar))
        out += self._notify(out)
        self.risk.observe(bar.close_datetime, self.broker.equity())
        for s in self.strategies:
            if s.wants_bar(bar.full_symbol, bar.interval):
                out += self._call(s, "on_bar", bar, interval=bar.interval)
        return out

    def on_chart(self, full_symbol: str, interval: str, window: Any) -> list[Event]:
        """Deliver a chart-window change to the strategies that want that symbol and interval; returns the events."""
        out: list[Event] = []
        for s in self.strategies:
            if s.wants_bar(full_symbol, interval):
                out += self._call(s, "on_chart", full_symbol, interval, window, interval=interval)
        return out

    def on_mtf(self, snapshot: Any, group: str | None = None) -> list[Event]:
        """Deliver an aligned snapshot to the strategies whose ``groups`` name its group (all if it has none).

        ``snapshot`` is an ``aitrados.marketdata.align.Snapshot`` or its published record
        (``Snapshot.to_record()``), which is turned back into a Snapshot first.
        """
        if isinstance(snapshot, Mapping):
            snapshot = snapshot_from_record(snapshot)
        group = group or getattr(snapshot, "group", None)
        out: list[Event] = []
        for s in self.strategies:
            if group is None or not s.groups or group in s.groups:
                out += self._call(s, "on_mtf", snapshot)
        return out

    def on_news(self, item: NewsItem | Mapping[str, Any]) -> list[Event]:
        """Deliver a news item (or its protocol record) to every strategy; returns the events."""
        if isinstance(item, Mapping):
            item = news_from_record(item)
        return self._broadcast("on_news", item)

    def on_calendar_event(self, event: CalendarEvent | Mapping[str, Any]) -> list[Event]:
        """Deliver a calendar event (or its protocol record) to every strategy; returns the events."""
        if isinstance(event, Mapping):
            event = event_from_record(event)
        return self._broadcast("on_calendar_event", event)

    def submit(self, item: OrderIntent | Cancel) -> list[Event]:
        """Submit an order intent (or a cancel) from outside the engine's strategies, e.g. a
        strategy in another process; it goes through the same risk checks. Returns the events."""
        return self._submit(item)

    # ------------------------------------------------------------------ kill switch
    def trip(self, reason: str = "tripped by operator") -> None:
        """Trip the risk kill switch (new orders rejected until :meth:`reset`)."""
        self.risk.trip(reason)

    def reset(self) -> None:
        """Reset the risk kill switch."""
        self.risk.reset()

    # ------------------------------------------------------------------ internals
    def _broadcast(self, method: str, arg: Any) -> list[Event]:
        out: list[Event] = []
        for s in self.strategies:
            out += self._call(s, method, arg)
        return out

    def _call(self, s: Strategy, method: str, *args: Any, interval: str | None = None) -> list[Event]:
        ctx = s.ctx
        ctx.now = self.broker.now
        ctx.interval = interval
        try:
            getattr(s, method)(*args)
        except Exception as exc:
            msg = f"strategy {s.strategy_name}.{method} raised {type(exc).__name__}: {exc}"
            logger.exception(msg)
            self.errors.append(msg)
        out: list[Event] = []
        rounds = 0
        while True:
            queued = ctx.drain()
            if not queued or rounds >= _MAX_ROUNDS:
                if queued:
                    msg = f"strategy {s.strategy_name} keeps placing orders from on_fill/on_order; dropped {len(queued)}"
                    logger.error(msg)
                    self.errors.append(msg)
                break
            rounds += 1
            new: list[Event] = []
            for item in queued:
                new += self._submit(item)
            out += new
            out += self._notify(new)
        return out

    def _submit(self, item: OrderIntent | Cancel) -> list[Event]:
        if isinstance(item, Cancel):
            return self._publish(self.broker.cancel(item.client_id, item.strategy or None))
        now = self.broker.now
        if now is None:
            msg = f"strategy {item.strategy} placed order {item.client_id} before any bar: no clock or price yet; dropped"
            logger.error(msg)
            self.errors.append(msg)
            return []
        try:
            orders = self.broker.create_orders(item, now)
        except ValueError as exc:
            msg = f"strategy {item.strategy}: {exc}"
            logger.error(msg)
            self.errors.append(msg)
            return []
        out: list[Event] = []
        for order in orders:  # a reversal: the close, then the open, each checked on its own
            last = self.broker.last_price(order.full_symbol)
            ctx = RiskContext(
                now=now,
                position=self.broker.position(order.full_symbol),
                price=last if last is not None else math.nan,
                equity=self.broker.equity(),
                pending=self.broker.pending(order.full_symbol),
            )
            decision = self.risk.check(order, ctx)
            if decision.approved:
                out += self._publish(self.broker.accept(order))
            else:
                out += self._publish(self.broker.reject(order, decision.rule, decision.reason))
        return out

    def _notify(self, events: list[Event]) -> list[Event]:
        """Tell the owning strategies about their order changes and fills; returns events that caused."""
        out: list[Event] = []
        if self._depth >= _MAX_ROUNDS:
            if events:
                msg = f"order callbacks nested {self._depth} deep; not notifying {len(events)} more events"
                logger.error(msg)
                self.errors.append(msg)
            return out
        self._depth += 1
        try:
            out = self._notify_now(events)
        finally:
            self._depth -= 1
        return out

    def _notify_now(self, events: list[Event]) -> list[Event]:
        out: list[Event] = []
        for ev in events:
            p = ev.payload
            if isinstance(p, (Order, Fill)) and p.strategy in self._by_name:
                s = self._by_name[p.strategy]
                out += self._call(s, "on_order" if isinstance(p, Order) else "on_fill", p)
        return out

    def _publish(self, events: list[Event]) -> list[Event]:
        self.events.extend(events)
        return deliver(events, self.listeners, "engine")


def snapshot_from_record(rec: Mapping[str, Any]) -> Any:
    """Rebuild an aligned ``Snapshot`` from its published record (``Snapshot.to_record()``).

    :raises ValueError: when the record lacks ``group``, ``frontier`` or ``bars``.
    """
    from aitrados.marketdata.align import Snapshot

    missing = [k for k in ("group", "frontier", "bars") if k not in rec]
    if missing:
        raise ValueError(f"snapshot record lacks {', '.join(missing)}; expected Snapshot.to_record() output")
    bars = {
        (fs, iv): bar_from_record(b, fs, iv)
        for fs, by_iv in rec["bars"].items()
        for iv, b in by_iv.items()
    }
    return Snapshot(
        group=str(rec["group"]),
        frontier=parse_timestamp(rec["frontier"]),
        bars=bars,
        updated=tuple((m[0], m[1]) for m in rec.get("updated", ())),
        partial=bool(rec.get("partial", False)),
        missing=tuple((m[0], m[1]) for m in rec.get("missing", ())),
    )
