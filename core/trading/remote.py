"""Strategies in another process, trading against the middleware's one account over the bus.

:class:`RemoteStrategyRunner` is what an isolated plugin's worker runs for the strategies the
plugin registered. It subscribes to the topics the strategies need, decodes each message with
:mod:`aitrados.events` into the record the in-process engine gives (closed ``Bar``, chart
message, ``Snapshot``, ``NewsItem``, ``CalendarEvent``, ``Order``, ``Fill``) and hands it, one
message at a time in arrival order (signals too: ``Signal``), to the same :class:`~aitrados.trading.driver.StrategyDriver`
the in-process :class:`~aitrados.trading.engine.TradingEngine` uses (same callbacks, same order),
which sends what the strategies order to the middleware's ``trading`` RPC service:

* ``trading.attach(strategy) -> {"step": int}`` / ``trading.detach(strategy)``
* ``trading.submit(strategy, intent) -> [{"topic", "payload"}, ...]`` (``intent`` is
  ``msgspec.to_builtins(OrderIntent)``) and ``trading.cancel(strategy, client_id)``
* ``trading.position(strategy, full_symbol) -> float``, ``trading.positions()``, ``trading.account()``
* ``trading.report_state(strategy, state)``: the strategy's own ``state()``, sent when it changed,
  at most every ``state_interval`` seconds and once more at the end of a replay, so
  ``trading.strategy_state`` and the dashboard show isolated strategies too; on the same tick
  ``middleware.report_gaps`` with the messages this process's subscribers missed, when they changed
* ``trading.ack(strategy, step)`` after the ``replay.step`` message of that step: everything
  published before it, and the submits it caused, has been processed (and after ``on_stop``
  for the step ``replay.end`` carries). The replay waits for the acks, so a replay with
  remote strategies stays deterministic. An ack is idempotent: one that timed out or found
  the service momentarily unavailable is sent again.

After attaching it asks the middleware's market-data hub for the data the strategies need
(``chart.add`` for each symbol and interval, ``mtf.add_group`` for each group), so bars flow
even when no in-process strategy needs the same ones; a middleware without those services
is fine (the data comes only if something else publishes it).

Strategies use their usual :class:`~aitrados.trading.strategy.StrategyContext`: its portfolio
is :class:`RemotePortfolio`, whose answers come over RPC.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec
import zmq
from loguru import logger

from ..bus.addresses import Endpoints
from ..bus.client import RPCClient
from ..bus.tokens import read_token
from ..bus.errors import BusError, RPCTimeoutError, ServiceUnavailableError, UnknownServiceError
from ..bus.gaps import GapReporter
from ..bus.probe import prove
from ..bus.pubsub import Message, Publisher, Subscriber
from ..events import MARKET_KINDS, Kind, Topic, decode, parse_topic

from .driver import StrategyDriver, topics_for
from .orders import Account, Event, Fill, Order, OrderIntent
from .strategy import Cancel, Strategy

__all__ = ["RemotePortfolio", "RemoteStrategyRunner", "record_of", "topics_for"]

#: Order events from submit replies remembered to drop their copies arriving on the bus.
_SEEN_LIMIT = 10_000
#: Attempts per step acknowledgement (an ack is idempotent, so a lost one is sent again).
_ACK_ATTEMPTS = 4


def record_of(topic: str, payload: Any) -> Any:
    """The typed trading record of an event published on *topic* (``order.*``, ``fill.*``, ``position.*``).

    :raises ValueError: when the topic is not one of those or the payload does not fit its record.
    """
    t = parse_topic(topic)
    if t is None or t.kind not in (Kind.ORDER, Kind.FILL, Kind.POSITION):
        raise ValueError(f"{topic!r} is not an order, fill or position topic")
    try:
        return decode(t.kind, payload)
    except ValueError as exc:
        raise ValueError(f"{topic}: {exc}") from None


def _event_key(rec: Any) -> tuple[Any, ...] | None:
    """Identity of an order event (one per order and status) or a fill, for de-duplication."""
    if isinstance(rec, Order):
        return ("order", rec.id, rec.status)
    if isinstance(rec, Fill):
        return ("fill", rec.order_id, rec.datetime, rec.quantity, rec.price)
    return None


class RemotePortfolio:
    """A strategy context's portfolio whose answers come from the ``trading`` service over RPC.

    :param rpc: a client of the middleware
    :param service: the trading service's name
    :param timeout: seconds per call
    """

    def __init__(self, rpc: RPCClient | None, service: str = "trading", timeout: float | None = None) -> None:
        self.rpc = rpc
        self.service = service
        self.timeout = timeout

    def _rpc(self) -> RPCClient:
        if self.rpc is None:
            raise RuntimeError("the remote portfolio has no RPC client: start the runner first")
        return self.rpc

    def position(self, full_symbol: str, strategy: str | None = None) -> float:
        """The strategy's own signed position (or the account's when *strategy* is None)."""
        if strategy:
            return float(self._rpc().call(self.service, "position", strategy=strategy, full_symbol=full_symbol,
                                       timeout=self.timeout))
        positions = self._rpc().call(self.service, "positions", timeout=self.timeout)
        items = positions.values() if isinstance(positions, Mapping) else positions
        for p in items or ():
            if isinstance(p, Mapping) and p.get("full_symbol") == full_symbol:
                return float(p.get("quantity") or 0.0)
        return 0.0

    def account(self) -> Account:
        """The account summary."""
        return msgspec.convert(self._rpc().call(self.service, "account", timeout=self.timeout), Account)


class RemoteStrategyRunner:
    """Runs strategies in this process against the middleware's ``trading`` service.

    :param strategies: the strategies (unique ``strategy_name``)
    :param endpoints: the middleware's addresses (``Endpoints``)
    :param bus: bus settings (CURVE keys, timeouts); optional
    :param context: ZeroMQ context (the process-wide one by default)
    :param service: the trading service's name
    :param timeout: seconds per RPC call (default: the bus's ``rpc_timeout``)
    :param attach_timeout: seconds without a ``trading`` service after which a warning is
        logged (the runner keeps trying until stopped: the middleware may start it later)
    :param state_interval: least seconds between two reports of the strategies' ``state()``
    """

    def __init__(self, strategies: Iterable[Strategy], endpoints: Endpoints, bus: Any = None, *,
                 context: zmq.Context | None = None, service: str = "trading", timeout: float | None = None,
                 attach_timeout: float = 30.0, state_interval: float = 0.5) -> None:
        self.strategies: list[Strategy] = list(strategies)
        if not self.strategies:
            raise ValueError("RemoteStrategyRunner: no strategies to run")
        for s in self.strategies:
            if not isinstance(s, Strategy):
                raise TypeError(f"RemoteStrategyRunner: {s!r} is not an aitrados.trading.Strategy")
        self.portfolio = RemotePortfolio(None, service, timeout)
        #: Calls the strategies' callbacks, exactly as the in-process engine does.
        self.driver = StrategyDriver(self.strategies, self.portfolio, self._submit)
        self.endpoints = endpoints
        self.bus = bus
        self.service = service
        self.timeout = timeout
        self.attach_timeout = attach_timeout
        self._zctx = context
        self._by_name = self.driver.by_name
        self.rpc: RPCClient | None = None
        self._sub: Subscriber | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._early: list[Message] = []
        self._seen: collections.OrderedDict[tuple[Any, ...], None] = collections.OrderedDict()
        #: Attach reply per strategy (``{"step": int}``).
        self.attached: dict[str, Any] = {}
        #: The last ``replay.step`` acknowledged.
        self.step: int | None = None
        self.ended = threading.Event()
        #: Set once every strategy is attached and its data requested (then ``on_start`` runs).
        self.ready = threading.Event()
        #: What went wrong (strategy errors, refused submits), one line each; shared with the driver.
        self.errors: list[str] = self.driver.errors
        #: Strategy callback errors (the driver's counter); the running totals go to the trading
        #: service with the step acknowledgements, so the run's report and exit status count them.
        self.callback_errors = self.driver.callback_errors
        self._reported: dict[str, int] = {}
        #: Messages handled, by event kind.
        self.counts: collections.Counter[str] = collections.Counter()
        self.state_interval = state_interval
        self._next_state = 0.0
        self._state_sent: dict[str, Any] = {}
        self._state_warned = False
        self._gaps: GapReporter | None = None

    # ------------------------------------------------------------------ lifecycle
    def topics(self) -> list[str]:
        """The topic prefixes this runner subscribes to."""
        return topics_for(self.strategies)

    def start(self) -> RemoteStrategyRunner:
        """Subscribe (returns once the subscription is proven) and start the runner's thread.

        The thread attaches every strategy (waiting for the ``trading`` service as long as it
        takes), requests their data, calls ``on_start`` and then handles messages in order,
        beginning with those that arrived meanwhile. ``ready`` is set once attached.

        :raises RuntimeError: when the subscription cannot be proven (no middleware).
        """
        ctx = self._zctx or zmq.Context.instance()
        # the service token proves this is a worker of the middleware's user (``attach`` needs it)
        token = read_token(self.bus, "service") if self.bus is not None else None
        self.rpc = RPCClient(self.endpoints.rpc_frontend, bus=self.bus, context=ctx, timeout=self.timeout, token=token)
        self._sub = Subscriber(self.endpoints.subscribe, self.topics(), bus=self.bus, context=ctx)
        try:
            self._prove_subscription(ctx)
        except BaseException:
            self._close()
            raise
        self.portfolio.rpc = self.rpc
        self._gaps = GapReporter(self.rpc.call)
        self._thread = threading.Thread(target=self._main, name="aitrados-remote-strategies", daemon=True)
        self._thread.start()
        return self

    def _prove_subscription(self, ctx: zmq.Context) -> None:
        """Publish a probe until it comes back through the router (subscriptions propagate asynchronously);
        real traffic that came meanwhile is handled first, in order."""
        assert self._sub is not None
        pub = Publisher(self.endpoints.publish, bus=self.bus, context=ctx)
        try:
            self._early += prove(self._sub, pub.publish, self.endpoints.subscribe, "remote")
        finally:
            pub.close()

    def _attach_all(self) -> bool:
        """Attach every strategy, waiting for the service; False when stopped first."""
        assert self.rpc is not None
        warn_at = time.monotonic() + self.attach_timeout
        for name in self._by_name:
            while not self._stop.is_set():
                try:
                    self.attached[name] = self.rpc.call(self.service, "attach", strategy=name, timeout=5.0,
                                                        idempotent=True)
                    break
                except (UnknownServiceError, ServiceUnavailableError, RPCTimeoutError) as exc:
                    if warn_at and time.monotonic() >= warn_at:
                        warn_at = 0.0
                        logger.warning("strategies {}: no {!r} service to attach to after {:g}s ({}); they trade "
                                       "once a middleware runs it (`aitrados run`); still trying",
                                       ", ".join(self._by_name), self.service, self.attach_timeout,
                                       type(exc).__name__)
                    self._stop.wait(0.1)
            else:
                return False
        return True

    def _request_data(self) -> None:
        """Ask the hub for the strategies' charts and groups (idempotent; no hub is not an error)."""
        assert self.rpc is not None
        calls: list[tuple[str, str, dict[str, Any]]] = []
        for s in self.strategies:
            needs = s.needs()
            for sym in needs.symbols:
                for iv in needs.intervals:
                    calls.append(("chart", "add", {"full_symbol": sym, "interval": iv, "size": needs.window or None}))
            for group, members in needs.groups.items():
                calls.append(("mtf", "add_group", {"name": group, "members": members}))
        for service, method, params in calls:
            try:
                self.rpc.call(service, method, **params)
            except (UnknownServiceError, ServiceUnavailableError):
                logger.info("no {!r} service: {} {} not requested (data comes only if something publishes it)",
                            service, method, params)
            except BusError as exc:  # e.g. the group exists already
                logger.debug("{}.{} {}: {}", service, method, params, exc)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop handling messages, detach every strategy (errors logged) and close the sockets."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.error("remote strategy runner did not stop within {:g}s", timeout)
        if self.rpc is not None:
            for name in self.attached:
                try:
                    self.rpc.call(self.service, "detach", strategy=name, timeout=2.0, **self._session(name))
                except (UnknownServiceError, ServiceUnavailableError):
                    logger.debug("strategy {!r} not detached: the {!r} service is gone already", name, self.service)
                except BusError as exc:
                    logger.warning("detaching strategy {!r} failed: {}", name, exc)
        self.attached.clear()
        self._close()

    def _close(self) -> None:
        for sock in (self._sub, self.rpc):
            if sock is not None:
                sock.close()
        self._sub = None
        self.rpc = None

    @property
    def running(self) -> bool:
        """True while the message thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def _main(self) -> None:
        try:
            if not self._attach_all():
                return
            self._request_data()
            logger.info("remote strategies {} attached to {!r} (step {}); topics: {}", ", ".join(self._by_name),
                        self.service, {n: a.get("step") if isinstance(a, Mapping) else a
                                       for n, a in self.attached.items()}, ", ".join(self.topics()))
            self.ready.set()
            self.driver.start()
            early, self._early = self._early, []
            for msg in early:
                self._safe_handle(msg)
            sub = self._sub
            assert sub is not None
            while not self._stop.is_set():
                msg = sub.recv(timeout=0.1)
                if msg is not None:
                    self._safe_handle(msg)
                self._report_states()
        except Exception as exc:  # never die silently
            logger.exception("remote strategy runner stopped: {}", exc)
            self.errors.append(f"runner stopped: {type(exc).__name__}: {exc}")

    def _safe_handle(self, msg: Message) -> None:
        try:
            self.handle(msg.topic, msg.data)
        except Exception as exc:
            line = f"message on {msg.topic!r} not handled: {type(exc).__name__}: {exc}"
            logger.opt(exception=exc).error(line)
            self.errors.append(line)

    # ------------------------------------------------------------------ dispatch
    def handle(self, topic: str, data: Any) -> None:
        """Deliver one published message to the strategies (called in arrival order).

        Counts it by kind, then hands it to that kind's step: market data, executions, a
        replay step, the replay's end. Position events are account-wide: strategies ask
        ``ctx.position()``, plugins get the ``on_position`` hook.

        :raises ValueError: when the payload does not decode as its topic's kind says.
        """
        t = parse_topic(topic)
        if t is None:
            return
        self.counts[t.kind.value] += 1
        if t.kind in MARKET_KINDS:
            self._on_market(t, data)
        elif t.kind is Kind.SIGNAL:
            self.driver.handle_signal(decode(t.kind, data))
        elif t.kind in (Kind.ORDER, Kind.FILL):
            self._on_execution(topic, t.kind, data)
        elif t.kind is Kind.STEP:
            self._ack(decode(t.kind, data)["step"])
        elif t.kind is Kind.END:
            self._on_end(decode(t.kind, data))

    def _on_market(self, t: Topic, data: Any) -> None:
        """A bar, chart, aligned snapshot, news item or calendar event: to the strategies' driver.

        Live, still-forming bars do not drive strategies (as in the engine).
        """
        payload = decode(t.kind, data)
        if t.kind is Kind.BAR and not payload.closed:
            return
        if t.kind is Kind.MTF:
            self.driver.handle_mtf(payload, payload.group or t.subject)
        else:
            self.driver.handle(t.kind, payload)

    def _on_execution(self, topic: str, kind: Kind, data: Any) -> None:
        """An order or fill event: to the strategies, unless the submit reply delivered it already."""
        rec = decode(kind, data)
        key = _event_key(rec)
        if key is not None and key in self._seen:
            del self._seen[key]
            return
        self.driver.handle_execution([Event(topic, rec)])

    def _on_end(self, rec: Any) -> None:
        """The replay ended: stop the strategies (``on_stop``), then acknowledge the end's step."""
        self.driver.stop()
        self._report_states(force=True)  # the final state is shown before the replay's end is acknowledged
        if rec.get("step") is not None:
            self._ack(rec["step"])
        self.ended.set()

    def _report_states(self, force: bool = False) -> None:
        """Send each attached strategy's ``state()`` to ``trading.report_state`` when it changed,
        at most every ``state_interval`` seconds (unless *force*). A ``state()`` that raises is
        sent as ``{"error": ...}``; a refused report is logged (once) and tried again later. On the
        same tick, the messages this process's subscribers missed go to ``middleware.report_gaps``
        when they changed, so the middleware's ``stats`` count them."""
        now = time.monotonic()
        if self.rpc is None or (not force and now < self._next_state):
            return
        self._next_state = now + self.state_interval
        for st in self.strategies:
            name = st.strategy_name
            if name not in self.attached:
                continue
            try:
                state = msgspec.to_builtins(st.state())
            except Exception as exc:  # noqa: BLE001 - shown to the caller as the strategy's state
                state = {"error": f"{type(exc).__name__}: {exc}"}
            if state == self._state_sent.get(name):
                continue
            try:
                self.rpc.call(self.service, "report_state", strategy=name, state=state, **self._session(name))
                self._state_sent[name] = state
            except BusError as exc:
                if not self._state_warned:
                    self._state_warned = True
                    logger.warning("strategy {!r}: state not reported to {!r} ({}: {}); the dashboard will not "
                                   "show it", name, self.service, type(exc).__name__, exc)
        if self._gaps is not None:
            try:
                self._gaps.report()
            except BusError as exc:  # sent again on the next tick
                logger.debug("gap counts not reported to the middleware: {}", exc)

    def _session(self, name: str) -> dict[str, str]:
        """The ``session`` argument proving *name*'s identity to ``trading`` (from its ``attach`` reply)."""
        reply = self.attached.get(name)
        session = reply.get("session") if isinstance(reply, dict) else None
        return {"session": session} if isinstance(session, str) else {}

    def _ack(self, step: int) -> None:
        """Acknowledge *step* for every strategy; an ack is idempotent, so one that timed out or
        met an unavailable service is sent again (a few times, then the error is raised)."""
        assert self.rpc is not None
        for name in self._by_name:
            # running totals (an ack sent again after a timeout cannot count an error twice)
            errors = {k: v for k, v in self.callback_errors.items()
                      if k.startswith(name + ".") and self._reported.get(k) != v}
            extra = {"errors": errors} if errors else {}
            for attempt in range(1, _ACK_ATTEMPTS + 1):
                try:
                    self.rpc.call(self.service, "ack", strategy=name, step=step, **self._session(name), **extra)
                    self._reported.update(errors)
                    break
                except (RPCTimeoutError, ServiceUnavailableError) as exc:
                    if attempt == _ACK_ATTEMPTS or self._stop.is_set():
                        raise
                    logger.warning("ack of step {} for strategy {!r} failed ({}); sending it again", step, name,
                                   type(exc).__name__)
                    self._stop.wait(0.05 * attempt)
        self.step = step

    # ------------------------------------------------------------------ orders
    def _submit(self, item: OrderIntent | Cancel) -> list[Event]:
        """Send one intent or cancellation of a strategy; returns the events of the reply."""
        assert self.rpc is not None
        strategy = item.strategy
        try:
            if isinstance(item, Cancel):
                reply = self.rpc.call(self.service, "cancel", strategy=strategy, client_id=item.client_id,
                                      **self._session(strategy))
            else:
                reply = self.rpc.call(self.service, "submit", strategy=strategy, intent=msgspec.to_builtins(item),
                                      **self._session(strategy))
        except BusError as exc:
            what = f"cancel {item.client_id}" if isinstance(item, Cancel) else f"order {item.client_id}"
            line = f"strategy {strategy}: {what} not sent: {type(exc).__name__}: {exc}"
            logger.error(line)
            self.errors.append(line)
            return []
        out: list[Event] = []
        for ev in reply or ():
            topic = ev.get("topic", "") if isinstance(ev, Mapping) else ""
            t = parse_topic(topic) if isinstance(topic, str) else None
            if t is None or t.kind not in (Kind.ORDER, Kind.FILL, Kind.POSITION):
                continue
            rec = decode(t.kind, ev.get("payload"))
            key = _event_key(rec)
            if key is not None:
                self._seen[key] = None
                while len(self._seen) > _SEEN_LIMIT:
                    self._seen.popitem(last=False)
            out.append(Event(topic, rec))
        return out
