"""The one place strategy callbacks are called, in-process and in an isolated worker alike.

:class:`StrategyDriver` holds a set of strategies and turns events into their callbacks:
which strategy gets which event (its symbols, intervals and groups), the order of the calls,
what an order placed in a callback causes (submitted at once; the order and fill events that
come back go to the owning strategy's ``on_order``/``on_fill``, which may order again, bounded)
and what a raising callback does (logged with the strategy's name, counted, the loop goes on).
It also keeps the clock strategies see (``ctx.now``): the latest data time of the events it
handled — a bar's close, a snapshot's frontier, a news item's publication, a fill's time —
so the clock too is the same wherever a strategy runs.

The :class:`~aitrados.trading.engine.TradingEngine` drives it with the paper broker as the
portfolio and its own risk-checked submit; :class:`~aitrados.trading.remote.RemoteStrategyRunner`
with the ``trading`` RPC service as both. Because both use this class, a strategy gets the
same callbacks in the same order either way (a test runs every first-party strategy both ways).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from loguru import logger

from ..events import Kind

from .orders import Event, Fill, Order, OrderIntent
from .strategy import Cancel, Portfolio, Strategy, StrategyContext

__all__ = ["MAX_ROUNDS", "StrategyDriver", "overrides", "topics_for"]

#: Bounded re-entry: ``on_order``/``on_fill`` may place orders that fill at once, which call them again.
MAX_ROUNDS = 8

#: Submits one intent or cancellation; returns the events it caused (order, fill, position).
Submit = Callable[[OrderIntent | Cancel], list[Event]]


def overrides(s: Strategy, method: str) -> bool:
    """True when *s* implements callback *method* itself (not the base class's no-op)."""
    return getattr(type(s), method, None) is not getattr(Strategy, method, None)


class StrategyDriver:
    """Strategies, their contexts, and the rules by which events become callbacks.

    :param strategies: the strategies (unique ``strategy_name``)
    :param portfolio: what their contexts answer position and account questions from
    :param submit: sends one intent or cancellation; returns the events it caused
    :raises ValueError: when two strategies share a name
    """

    def __init__(self, strategies: Iterable[Strategy], portfolio: Portfolio | None, submit: Submit) -> None:
        self.strategies: list[Strategy] = list(strategies)
        names = [s.strategy_name for s in self.strategies]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"strategy names must be unique in one engine or worker; duplicated: "
                             f"{', '.join(dupes)} (set `name`)")
        self.by_name: dict[str, Strategy] = dict(zip(names, self.strategies))
        self._chart_takers = [s for s in self.strategies if overrides(s, "on_chart")]
        for s in self.strategies:
            s.bind(StrategyContext(s.strategy_name, portfolio))
        self.submit = submit
        #: The data time strategies see as ``ctx.now`` (None before the first timed event).
        self.now: dt.datetime | None = None
        #: What went wrong (raising callbacks, runaway re-entry), one line each.
        self.errors: list[str] = []
        #: Callback errors, ``"strategy.method: ExceptionType"`` -> how many times.
        self.callback_errors: Counter[str] = Counter()
        self.started = False
        self.stopped = False
        self._depth = 0

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> list[Event]:
        """Call every strategy's ``on_start`` (once); returns the events its orders caused."""
        if self.started:
            return []
        self.started = True
        out: list[Event] = []
        for s in self.strategies:
            out += self.call(s, "on_start")
        return out

    def stop(self) -> list[Event]:
        """Call every strategy's ``on_stop`` (once, after ``on_start``); returns the events."""
        out = self.start()
        if self.stopped:
            return out
        self.stopped = True
        for s in self.strategies:
            out += self.call(s, "on_stop")
        return out

    # ------------------------------------------------------------------ market events
    def handle(self, kind: Kind | str, payload: Any) -> list[Event]:
        """Deliver one decoded market or signal event (bar, chart, mtf, news, calendar, signal); returns the
        events caused.

        ``payload`` is what :func:`aitrados.events.decode` gives for *kind*.
        """
        k = Kind(kind)
        if k is Kind.BAR:
            return self.handle_bar(payload)
        if k is Kind.CHART:
            return self.handle_chart(payload["full_symbol"], payload["interval"], payload)
        if k is Kind.MTF:
            return self.handle_mtf(payload)
        if k is Kind.NEWS:
            self.advance(getattr(payload, "published_date", None))
            return self.broadcast("on_news", payload)
        if k is Kind.CALENDAR:
            return self.broadcast("on_calendar_event", payload)
        if k is Kind.SIGNAL:
            return self.handle_signal(payload)
        raise ValueError(f"{k.value} events are not market events (nor signals); use handle_execution or start/stop")

    def handle_bar(self, bar: Any) -> list[Event]:
        """``on_bar`` of the strategies that want the bar's symbol and interval (closed bars only)."""
        if not getattr(bar, "closed", True):
            return []
        self.advance(bar.close_datetime)
        out = self.start()
        for s in self.strategies:
            if s.wants_bar(bar.full_symbol, bar.interval):
                out += self.call(s, "on_bar", bar, interval=bar.interval)
        return out

    def handle_signal(self, signal: Any) -> list[Event]:
        """``on_signal`` of the strategies that want the signal's symbol (see ``Strategy.wants_signal``).

        A signal does not move ``ctx.now``: its time may lie ahead (a stand-aside window's start).
        """
        out = self.start()
        for s in self.strategies:
            if overrides(s, "on_signal") and s.wants_signal(signal):
                out += self.call(s, "on_signal", signal)
        return out

    def handle_chart(self, full_symbol: str, interval: str, window: Any) -> list[Event]:
        """``on_chart`` of the strategies that implement it and want that symbol and interval (as in an
        isolated worker, which subscribes ``chart.`` only for those: see :func:`topics_for`)."""
        out = self.start()
        for s in self._chart_takers:
            if s.wants_bar(full_symbol, interval):
                out += self.call(s, "on_chart", full_symbol, interval, window, interval=interval)
        return out

    def handle_mtf(self, snapshot: Any, group: str | None = None) -> list[Event]:
        """``on_mtf`` of the strategies whose ``groups`` name the snapshot's group (all when they name none)."""
        group = group or getattr(snapshot, "group", None)
        self.advance(getattr(snapshot, "frontier", None))
        out = self.start()
        for s in self.strategies:
            if group is None or not s.groups or group in s.groups:
                out += self.call(s, "on_mtf", snapshot)
        return out

    def broadcast(self, method: str, arg: Any) -> list[Event]:
        """Call *method* (``on_news``, ``on_calendar_event``) of every strategy with *arg*."""
        out = self.start()
        for s in self.strategies:
            out += self.call(s, method, arg)
        return out

    # ------------------------------------------------------------------ execution events
    def handle_execution(self, events: Iterable[Event]) -> list[Event]:
        """Give each order and fill event to the strategy that owns it; returns the events that caused.

        Nesting (an ``on_fill`` ordering, that order filling at once, ...) is bounded by
        :data:`MAX_ROUNDS`; beyond it the events are logged and not delivered.
        """
        events = list(events)
        if self._depth >= MAX_ROUNDS:
            mine = [e for e in events if isinstance(e.payload, (Order, Fill)) and e.payload.strategy in self.by_name]
            if mine:
                self._error(f"order callbacks nested {self._depth} deep; not notifying {len(mine)} more events")
            return []
        self._depth += 1
        try:
            out: list[Event] = []
            for ev in events:
                p = ev.payload
                if isinstance(p, Fill):
                    self.advance(p.datetime)
                if isinstance(p, (Order, Fill)) and p.strategy in self.by_name:
                    out += self.call(self.by_name[p.strategy], "on_order" if isinstance(p, Order) else "on_fill", p)
            return out
        finally:
            self._depth -= 1

    # ------------------------------------------------------------------ one callback
    def call(self, s: Strategy, method: str, *args: Any, interval: str | None = None) -> list[Event]:
        """Call one callback of *s*, then submit what it queued and notify what that caused.

        A raising callback is counted in ``callback_errors`` (its first occurrence logged with the
        traceback and kept in ``errors``); orders queued before it raised are still submitted. Returns every event caused.
        """
        ctx = s.ctx
        ctx.now = self.now
        ctx.interval = interval
        try:
            getattr(s, method)(*args)
        except Exception as exc:
            self._callback_failed(s.strategy_name, method, exc)
        out: list[Event] = []
        rounds = 0
        while queued := ctx.drain():
            if rounds >= MAX_ROUNDS:
                self._error(f"strategy {s.strategy_name} keeps placing orders from on_fill/on_order; "
                            f"dropped {len(queued)}")
                break
            rounds += 1
            new: list[Event] = []
            for item in queued:
                new += self.submit(item)
            out += new
            out += self.handle_execution(new)
        return out

    def advance(self, t: dt.datetime | None) -> None:
        """Move the strategies' clock to *t* when it is later (data time never goes back)."""
        if t is not None and (self.now is None or t > self.now):
            self.now = t

    def _callback_failed(self, strategy: str, method: str, exc: Exception) -> None:
        """Count a callback error; its first occurrence is logged with the traceback and kept in
        ``errors``, repeats (same strategy, callback and exception type) are logged at DEBUG only."""
        key = f"{strategy}.{method}: {type(exc).__name__}"
        msg = f"strategy {strategy}.{method} raised {type(exc).__name__}: {exc}"
        self.callback_errors[key] += 1
        if self.callback_errors[key] == 1:
            logger.opt(exception=exc).error("{} (further errors like it are counted, not logged)", msg)
            self.errors.append(msg)
        else:
            logger.debug(msg)

    def _error(self, msg: str) -> None:
        logger.error(msg)
        self.errors.append(msg)

    # ------------------------------------------------------------------ subscriptions
    def topics(self) -> list[str]:
        """The topic prefixes these strategies need (see :func:`topics_for`)."""
        return topics_for(self.strategies)


def topics_for(strategies: Iterable[Strategy]) -> list[str]:
    """The topic prefixes an isolated worker subscribes to for *strategies* (``replay.`` included).

    Bars of each strategy's symbols x intervals (all bars when it names none), ``mtf.<group>``
    of its groups (every group when it has none but overrides ``on_mtf``), and ``chart.``,
    ``news.``, ``calendar.``, ``signal.``, ``order.``, ``fill.`` only when some strategy overrides the
    callback that takes them. A broader prefix replaces the narrower ones it covers.
    """
    from ..events import topic_prefix

    out: list[str] = ["replay."]

    def add(prefix: str) -> None:
        if prefix not in out:
            out.append(prefix)

    for s in strategies:
        needs = s.needs()
        for kind, wanted in ((Kind.BAR, True), (Kind.CHART, overrides(s, "on_chart"))):
            if not wanted:
                continue
            if needs.symbols and needs.intervals:
                for sym in needs.symbols:
                    for iv in needs.intervals:
                        add(topic_prefix(kind, sym, iv))
            elif needs.symbols and kind is Kind.BAR:
                for sym in needs.symbols:
                    add(topic_prefix(kind, sym))
            else:
                add(topic_prefix(kind))
        if needs.groups:
            for g in needs.groups:
                add(topic_prefix(Kind.MTF, g))
        elif overrides(s, "on_mtf"):
            add(topic_prefix(Kind.MTF))
        for method, kind in (("on_news", Kind.NEWS), ("on_calendar_event", Kind.CALENDAR), ("on_signal", Kind.SIGNAL),
                             ("on_order", Kind.ORDER), ("on_fill", Kind.FILL)):
            if overrides(s, method):
                add(topic_prefix(kind))
    return [p for p in out if not any(q != p and p.startswith(q) for q in out)]

