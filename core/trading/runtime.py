"""The trading loop inside the middleware: the engine fed by the market-data hub, on the bus.

``TradingRuntime`` consumes the hub's events in order (closed bars, aligned snapshots, news,
calendar events), drives the :class:`~aitrados.trading.engine.TradingEngine` (strategies,
risk, paper broker) and publishes every resulting ``order.*``, ``fill.*`` and ``position.*``
event. Strategies in other processes trade through the ``trading`` RPC service; in a replay
the runtime waits at each time step until every attached remote strategy has acknowledged
it (lock-step), so a replay gives the same orders and fills run after run. With a
:class:`~aitrados.signals.stage.SignalStage` (``signal_stage``) each bar, news item and calendar
event also goes to the signal modules (in-process or isolated): their signals are published and handed to the
strategies' ``on_signal`` right before the bar, right after the news item or calendar event (the
order the bus carries them in; docs/signals.md, "Strategies and the step guarantee").
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from pathlib import Path
from typing import Any

import msgspec
from loguru import logger

from ..bus.pubsub import Publisher
from ..bus.service import Service, Unauthorized, current_caller, rpc_method
from ..bus.tokens import new_token, same_token
from ..events import Kind
from .driver import overrides
from .engine import TradingEngine
from .orders import Event, OrderIntent
from .report import Report, build_report, run_folder, run_params
from .strategy import Cancel

_STEP, _END = Kind.STEP, Kind.END  # per event: reading a member off the enum class costs a lookup each time


class TradingRuntime:
    """Engine + publishing + remote-strategy lock-step.

    :param engine: the trading engine (strategies, risk, broker)
    :param publisher: bus publisher (used from the runtime's event loop only)
    :param interval: bar interval used to annualise the report's Sharpe ratio
    :param offload: run strategy callbacks in a worker thread (for strategies that block, e.g. on an LLM)
    :param ack_timeout: seconds to wait for a remote strategy's step acknowledgement before detaching it
    """

    def __init__(self, engine: TradingEngine, publisher: Publisher, *, interval: str = "DAY",
                 offload: bool = False, ack_timeout: float = 10.0) -> None:
        self.engine = engine
        self.pub = publisher
        self.interval = interval
        self.offload = offload
        self.ack_timeout = ack_timeout
        self.lock = asyncio.Lock()
        self.remote: dict[str, int] = {}  # strategy -> last acknowledged step
        self.step = 0
        self._acked = asyncio.Event()
        self.events_published = 0
        self.finished: Report | None = None
        #: Callback errors of strategies in other processes (running totals they send with their acks).
        self.remote_errors: dict[str, int] = {}
        #: The signal modules' stage (``aitrados.signals.stage.SignalStage``: ``run(kind, obj)`` and
        #: ``signals_first``), fed each bar, news item and calendar event (None: no signal module).
        self.signal_stage: Any = None
        self.signals_published = 0

    def callback_errors(self) -> dict[str, int]:
        """Every strategy callback error of the run, in-process and remote: ``{key: count}``."""
        out = dict(self.engine.callback_errors)
        for k, n in self.remote_errors.items():
            out[k] = out.get(k, 0) + n
        return out

    @property
    def broker(self) -> Any:
        """The engine's broker (account, positions, orders); read it under ``lock``."""
        return self.engine.broker

    # ------------------------------------------------------------------ remote strategies
    def attach_remote(self, strategy: str) -> int:
        """Wait for *strategy*'s step acknowledgements from now on; returns the current step."""
        self.remote[strategy] = self.step
        return self.step

    def detach_remote(self, strategy: str) -> None:
        """Stop waiting for *strategy* (a step it held up goes on)."""
        self.remote.pop(strategy, None)
        self._acked.set()

    def remote_acked(self, strategy: str, step: int, errors: Mapping[str, int] | None = None) -> None:
        """*strategy* processed everything up to *step*; *errors* are its callback errors' running totals."""
        for key, n in (errors or {}).items():
            self.remote_errors[key] = max(n, self.remote_errors.get(key, 0))
        if strategy in self.remote:
            self.remote[strategy] = max(step, self.remote[strategy])
            self._acked.set()

    # ------------------------------------------------------------------ engine access
    async def run_engine(self, fn: Any, *args: Any) -> list[Event]:
        """Call an engine method under the lock (in a thread when offloading) and publish its events."""
        if not self.offload and not self.lock.locked():
            events = fn(*args)  # nothing can interleave on this loop until the call returns: no lock round trip
        else:
            async with self.lock:
                events = await asyncio.to_thread(fn, *args) if self.offload else fn(*args)
        self.publish(events)
        return events

    def publish(self, events: list[Event]) -> None:
        """Publish engine events on their topics (``order.*``, ``fill.*``, ``position.*``)."""
        for ev in events:
            self.pub.publish(ev.topic, ev.payload)
        self.events_published += len(events)

    # ------------------------------------------------------------------ hub consumer
    @property
    def hub_kinds(self) -> frozenset[Kind]:
        """The hub events this runtime takes (read by the hub when it is added as a consumer): every
        kind, but ``chart`` only when an in-process strategy implements ``on_chart`` (nothing else
        here uses it: the chart message itself is published either way)."""
        if any(overrides(s, "on_chart") for s in self.engine.strategies):
            return frozenset(Kind)
        return frozenset(Kind) - {Kind.CHART}

    def consume(self, kind: str, obj: Any) -> Awaitable[None] | None:
        """Take one hub event (kinds of :class:`aitrados.events.Kind`: bar, chart, mtf, news, calendar, step, end).

        Market events go to :meth:`TradingEngine.handle`, and to the signal stage (if any, see
        :meth:`run_signals`): a bar's signals before it, a news item's or calendar event's after it;
        ``on_chart`` gets the published chart
        message (``{full_symbol, interval, seq, size, count, last, closed}``), the same in-process
        and in an isolated worker. At ``step`` (and ``end``) the replay waits until every attached
        remote strategy has acknowledged it; at ``end`` the run is finished (``on_stop``, report).

        :returns: None when the event was handled at once (a market event with no signal stage, no
            offloading and the engine free; a step no remote strategy holds up), else an awaitable that
            handles it: the hub awaits it before the next event.
        """
        k = kind if type(kind) is Kind else Kind(kind)  # the hub passes members: skip the enum lookup
        if k is _STEP:
            self.step = obj[0]
            return self._wait_for_remote(obj[0]) if self.remote else None
        if k is _END:
            return self._consume_end(obj)
        if self.signal_stage is None and not self.offload and not self.lock.locked():
            # nothing can interleave on this loop until the call returns: no lock round trip, no await
            events = self.engine.handle(k, obj)
            if events:
                self.publish(events)
            return None
        return self._consume_market(k, obj)

    #: The runtime is itself a hub consumer (``hub.consumers.append(runtime)``, which also reads ``hub_kinds``).
    __call__ = consume

    async def _consume_end(self, obj: Any) -> None:
        # the hub's replay.end carries the step after the last one: remote strategies ack it after on_stop
        end_step = obj.get("step") if isinstance(obj, Mapping) else None
        if end_step is not None:
            await self._wait_for_remote(int(end_step))
        await self.finish()

    async def _consume_market(self, k: Kind, obj: Any) -> None:
        stage = self.signal_stage
        first = stage is not None and k in stage.signals_first
        if first:
            await self.run_signals(await stage.run(k, obj))
        await self.run_engine(self.engine.handle, k, obj)
        if stage is not None and not first:
            await self.run_signals(await stage.run(k, obj))

    async def run_signals(self, signals: list[Any]) -> None:
        """Publish *signals* (before the event that caused them, on the hub's publisher) and deliver
        them to the strategies' ``on_signal``, in order."""
        if not signals:
            return
        for sig in signals:
            self.pub.publish(sig.topic, sig)
        self.signals_published += len(signals)

        def deliver() -> list[Event]:
            out: list[Event] = []
            for sig in signals:
                out += self.engine.handle(Kind.SIGNAL, sig)
            return out

        await self.run_engine(deliver)

    async def _wait_for_remote(self, step: int) -> None:
        if not self.remote:
            return
        deadline = asyncio.get_running_loop().time() + self.ack_timeout
        while True:
            late = [n for n, s in self.remote.items() if s < step]
            if not late:
                return
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                for n in late:
                    logger.error("remote strategy {!r} did not acknowledge step {} within {}s; detached "
                                 "(the replay goes on without waiting for it)", n, step, self.ack_timeout)
                    self.remote.pop(n, None)
                return
            self._acked.clear()
            try:
                await asyncio.wait_for(self._acked.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def finish(self) -> Report:
        """Stop the strategies (their ``on_stop`` orders are processed) and build the report."""
        if self.finished is None:
            await self.run_engine(self.engine.stop)
            self.finished = build_report(self.engine.broker, self.interval,
                                         params=run_params(self.engine, self.interval))
        return self.finished

    def write_report(self, folder: str | Path, title: str = "Equity") -> dict[str, Path]:
        """Write the report files (trades.csv, equity.png, equity.csv, metrics.json, summary.txt) into a new
        run folder under ``folder`` (``folder/latest`` then points at it); returns the paths, ``folder``
        being the run's."""
        report = self.finished or build_report(self.engine.broker, self.interval,
                                               params=run_params(self.engine, self.interval))
        return report.write(run_folder(folder), title)


class TradingService(Service):
    """RPC ``trading``: account queries, the kill switch, reports, and orders from remote strategies.

    Roles: queries are open; ``trip``/``reset`` need the operator token; ``attach`` needs the
    service token (isolated workers of this middleware) and returns a *session* that
    ``ack``/``detach``/``submit``/``cancel`` must send, so a client acts only for its own strategy.
    """

    name = "trading"

    def __init__(self, runtime: TradingRuntime) -> None:
        self._rt = runtime
        self._sessions: dict[str, str] = {}
        #: The last state each remote strategy reported (``report_state``), kept after it detaches.
        self._remote_states: dict[str, Any] = {}

    def _own(self, strategy: str, session: str | None) -> None:
        """Raise ``Unauthorized`` unless *session* is *strategy*'s (the operator may act for any strategy)."""
        caller = current_caller()
        if caller is not None and "operator" in caller.roles:
            return
        if not same_token(session, self._sessions.get(strategy)):
            raise Unauthorized(f"strategy {strategy!r}: not attached by this caller; send the `session` "
                               "that `attach` returned")

    # ---- queries
    async def positions(self) -> list[Any]:
        """Every position (account-wide)."""
        async with self._rt.lock:  # the engine may be running in a worker thread
            return self._rt.broker.positions()

    async def position(self, strategy: str, full_symbol: str) -> float:
        """The signed quantity *strategy* holds in *full_symbol*."""
        async with self._rt.lock:
            return self._rt.broker.position(full_symbol, strategy)

    async def orders(self, status: str | None = None) -> list[Any]:
        """Orders, optionally only those with *status* (accepted, rejected, filled, cancelled)."""
        async with self._rt.lock:  # the engine may be running in a worker thread
            return self._rt.broker.orders(status)

    async def account(self) -> Any:
        """Cash, equity, realised and unrealised PnL."""
        async with self._rt.lock:  # the engine may be running in a worker thread
            return self._rt.broker.account()

    async def report(self) -> dict[str, Any]:
        """The run's metrics so far (total return, drawdown, Sharpe, trades, win rate, exposure)."""
        async with self._rt.lock:
            r = self._rt.finished or build_report(self._rt.broker, self._rt.interval)
        return {"metrics": msgspec.to_builtins(r.metrics), "trades": len(r.trades), "summary": r.summary()}

    async def strategy_state(self) -> dict[str, Any]:
        """Each strategy's own ``state()`` (indicators, last signal, reason), by name: in-process
        strategies' as of now, isolated ones' as last reported by their worker (``report_state``).

        A strategy whose ``state()`` raises shows ``{"error": ...}`` instead; the others are unaffected.
        """
        async with self._rt.lock:  # the engine may be running in a worker thread
            out: dict[str, Any] = dict(self._remote_states)
            for st in self._rt.engine.strategies:
                try:
                    out[st.strategy_name] = msgspec.to_builtins(st.state())
                except Exception as exc:  # noqa: BLE001 - shown to the caller, logged once per call
                    logger.warning("strategy {!r}: state() failed: {}", st.strategy_name, exc)
                    out[st.strategy_name] = {"error": f"{type(exc).__name__}: {exc}"}
            return out

    # ---- kill switch
    @rpc_method(role="operator")
    def trip(self, reason: str = "tripped by operator") -> dict[str, Any]:
        """Trip the kill switch: new orders are rejected until ``reset`` (nothing stops)."""
        self._rt.engine.trip(reason)
        return self._rt.engine.risk.state()

    @rpc_method(role="operator")
    def reset(self) -> dict[str, Any]:
        """Reset the kill switch."""
        self._rt.engine.reset()
        return self._rt.engine.risk.state()

    def risk_state(self) -> dict[str, Any]:
        """Kill switch, limits and counters of the risk engine."""
        return self._rt.engine.risk.state()

    # ---- remote strategies
    @rpc_method(role="service")
    def attach(self, strategy: str) -> dict[str, Any]:
        """Register a strategy running elsewhere; replays then wait for its step acknowledgements.

        Returns ``{"step": int, "session": str}``; the session proves the strategy's identity later.
        """
        if not isinstance(strategy, str) or not strategy:
            raise ValueError("strategy must be a non-empty string")
        session = self._sessions[strategy] = new_token()
        step = self._rt.attach_remote(strategy)
        logger.info("remote strategy {!r} attached at step {}", strategy, step)
        return {"step": step, "session": session}

    def detach(self, strategy: str, session: str | None = None) -> None:
        """Stop waiting for a remote strategy."""
        self._own(strategy, session)
        self._sessions.pop(strategy, None)
        self._rt.detach_remote(strategy)

    def ack(self, strategy: str, step: int, session: str | None = None,
            errors: dict[str, int] | None = None) -> None:
        """A remote strategy has processed everything published up to ``replay.step`` *step*.

        *errors*: running totals of its callback errors, ``{"strategy.method: ExceptionType": n}``
        (kept in ``remote_errors``; the report and the exit status count them with the in-process ones).
        """
        self._own(strategy, session)
        for key, n in (errors or {}).items():
            if not str(key).startswith(f"{strategy}.") or not isinstance(n, int) or n < 0:
                raise ValueError(f"errors: {key!r}: {n!r} is not '{strategy}.<callback>: <Exception>': count")
        self._rt.remote_acked(strategy, step, {str(k): n for k, n in (errors or {}).items()})

    def report_state(self, strategy: str, state: Any, session: str | None = None) -> None:
        """A remote strategy's own ``state()`` (its worker sends it at a bounded rate), shown by ``strategy_state``.

        :raises ValueError: when *state* is not a map
        """
        self._own(strategy, session)
        if not isinstance(state, dict):
            raise ValueError(f"state must be a map (what Strategy.state() returns), not {type(state).__name__}")
        self._remote_states[strategy] = state

    async def submit(self, strategy: str, intent: dict[str, Any], session: str | None = None) -> list[dict[str, Any]]:
        """Submit an order intent of a remote strategy; returns the order events it caused."""
        self._own(strategy, session)
        it = msgspec.convert({**intent, "strategy": strategy}, OrderIntent)
        it.validate()
        events = await self._rt.run_engine(self._rt.engine.submit, it)
        return [{"topic": e.topic, "payload": msgspec.to_builtins(e.payload)} for e in events]

    async def cancel(self, strategy: str, client_id: str, session: str | None = None) -> list[dict[str, Any]]:
        """Cancel a working order of a remote strategy; returns the events."""
        self._own(strategy, session)
        events = await self._rt.run_engine(self._rt.engine.submit, Cancel(strategy=strategy, client_id=client_id))
        return [{"topic": e.topic, "payload": msgspec.to_builtins(e.payload)} for e in events]


__all__ = ["TradingRuntime", "TradingService"]
