"""The trading loop without I/O: events in, strategies, risk, paper broker, events out.

:class:`TradingEngine` is what the host calls for each bar, snapshot, news item and
calendar event (in replay and live alike), through :meth:`TradingEngine.handle` or the
``handle_*`` entry points (``on_*`` names are the strategies' callbacks); a backtest is
:meth:`TradingEngine.run` over a sequence of bars. Per bar it (1) lets the broker fill
working orders at this bar and mark to its close (the owners hear of it first), (2) tells
the risk engine the bar clock and equity, (3) calls the strategies that want the bar, and
(4) turns their intents into orders: resolve, risk check, accept or reject. Every resulting
event goes back to the caller (and to ``listeners``) for publishing on ``order.*``,
``fill.*``, ``position.*``.

Strategy callbacks are called by the :class:`~aitrados.trading.driver.StrategyDriver`, the
same one an isolated worker uses. A callback that raises is logged with the strategy's name
and counted in ``callback_errors`` (the first of each kind logged with its traceback,
repeats only counted); the loop goes on. Everything is ordered, so the same inputs give
the same events.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from loguru import logger

from ..events import Kind, decode, snapshot_from_record
from ..marketdata.models import Bar, CalendarEvent, NewsItem

from .broker import PaperBroker, deliver
from .driver import StrategyDriver
from .orders import Event, OrderIntent
from .risk import RiskCheck, RiskContext, RiskEngine
from .settings import TradingSettings
from .strategy import Cancel, Strategy

__all__ = ["TradingEngine", "engine_from_settings", "snapshot_from_record"]


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
        self.driver = StrategyDriver(strategies, self.broker, self._submit)
        self.strategies: list[Strategy] = self.driver.strategies
        self.listeners = list(listeners or [])
        self.events: list[Event] = []
        #: What went wrong (strategy errors, refused orders), one line each; shared with the driver.
        self.errors: list[str] = self.driver.errors
        #: Strategy callback errors, ``"strategy.method: ExceptionType"`` -> count; shared with the driver.
        self.callback_errors = self.driver.callback_errors
        self.bars_seen = 0

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> list[Event]:
        """Call every strategy's ``on_start`` once; returns the events (orders before any bar are dropped)."""
        return self.driver.start()

    def stop(self) -> list[Event]:
        """Call every strategy's ``on_stop`` (orders placed there are processed) and return the events."""
        return self.driver.stop()

    def run(self, bars: Iterable[Bar]) -> list[Event]:
        """Replay ``bars`` in order through the whole loop; returns all events of the run."""
        out = self.start()
        for bar in bars:
            out += self.handle_bar(bar)
        out += self.stop()
        return out

    # ------------------------------------------------------------------ inputs
    def handle(self, kind: Kind | str, payload: Any) -> list[Event]:
        """Take one market or signal event of *kind* (bar, chart, mtf, news, calendar, signal) as the hub hands it
        (or its bus payload, decoded first); returns the events it caused."""
        k = kind if type(kind) is Kind else Kind(kind)  # the hub passes members: skip the enum lookup
        if k is Kind.BAR:
            return self.handle_bar(payload)
        if k is Kind.CHART:
            return self.handle_chart(payload["full_symbol"], payload["interval"], payload)
        return self.driver.handle(k, decode(k, payload))

    def handle_bar(self, bar: Bar | Mapping[str, Any]) -> list[Event]:
        """Process one closed bar (a Bar or its protocol record); returns the events it caused."""
        if type(bar) is not Bar:  # the hub hands Bars; bus payloads are decoded
            bar = decode(Kind.BAR, bar)
        if not bar.closed:
            return []  # live, still-forming bars do not drive orders or fills
        out = self.start()
        self.bars_seen += 1
        fills = self._publish(self.broker.handle_bar(bar))
        out += fills
        out += self.driver.handle_execution(fills)
        self.risk.observe(bar.close_datetime, self.broker.equity())
        return out + self.driver.handle_bar(bar)

    def handle_chart(self, full_symbol: str, interval: str, window: Any) -> list[Event]:
        """Deliver a chart-window change to the strategies that want that symbol and interval; returns the events."""
        return self.driver.handle_chart(full_symbol, interval, window)

    def handle_mtf(self, snapshot: Any, group: str | None = None) -> list[Event]:
        """Deliver an aligned snapshot to the strategies whose ``groups`` name its group (all if it has none).

        ``snapshot`` is an ``aitrados.marketdata.align.Snapshot`` or its published record
        (``Snapshot.to_record()``), which is turned back into a Snapshot first.
        """
        return self.driver.handle_mtf(decode(Kind.MTF, snapshot), group)

    def handle_news(self, item: NewsItem | Mapping[str, Any]) -> list[Event]:
        """Deliver a news item (or its protocol record) to every strategy; returns the events."""
        return self.driver.handle(Kind.NEWS, decode(Kind.NEWS, item))

    def handle_calendar_event(self, event: CalendarEvent | Mapping[str, Any]) -> list[Event]:
        """Deliver a calendar event (or its protocol record) to every strategy; returns the events."""
        return self.driver.handle(Kind.CALENDAR, decode(Kind.CALENDAR, event))

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

    def _publish(self, events: list[Event]) -> list[Event]:
        self.events.extend(events)
        return deliver(events, self.listeners, "engine")


def engine_from_settings(
    strategies: Iterable[Strategy], settings: TradingSettings | None = None, checks: Iterable[RiskCheck] = ()
) -> TradingEngine:
    """A :class:`TradingEngine` with a broker and risk engine built from ``settings`` and the external ``checks``."""
    s = settings or TradingSettings()
    return TradingEngine(strategies, PaperBroker(s.broker), RiskEngine(s.risk, list(checks)))
