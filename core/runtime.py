"""What ``aitrados run`` runs: the middleware, the plugins, market data and the trading loop.

``Runtime.start()`` brings the parts up in order — routers, plugin host, the data provider
(the local replay server without a key, the AiTrados cloud with one), then, on one event
loop, the market-data hub (shared chart flow and aligner), the trading runtime and their
RPC services (``chart``, ``mtf``, ``trading``). It hydrates and subscribes what the
strategies declare, starts the replay clock, and shows progress. At the end of a replay it
writes the report (trades CSV, equity curve PNG, metrics) and prints a summary.

The RPC services' workers run in their own threads (their heartbeats never wait behind data
work on the runtime's loop) while the services' methods run on that loop. Each worker restarts
itself after a crash (logged with its cause, counted in ``aitrados status``); one that cannot be
kept up makes ``wait()`` stop the middleware with exit code 1 and the reason.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import time
from pathlib import Path
from typing import Any

from loguru import logger

from .bus.pubsub import Publisher
from .bus.service import Service, ServiceWorker
from .collector import RunCollector
from .gil import RUN_SWITCH_INTERVAL, RunSwitchInterval
from .events import Kind, consumes
from .marketdata.hub import AlignService, ChartService, MarketDataHub
from .marketdata.http_client import AsyncAitradosHTTPClient
from .marketdata.intervals import interval_minutes, is_intraday, normalize_interval
from .marketdata.loader import bundled_bar_files, symbol_from_filename
from .marketdata.replay_store import bar_file_spec
from .marketdata.http_service import HTTPService
from .marketdata.models import normalize_full_symbol, parse_full_symbol
from .marketdata.settings import MarketDataSettings
from .log import console
from .middleware import Middleware
from .pluginhost.host import PluginHost
from .settings import Settings
from .signals.stage import SignalStage
from .trading.engine import TradingEngine, engine_from_settings
from .trading.report import build_report
from .trading.report_html import PriceHistory, write_html_report
from .trading.runtime import TradingRuntime, TradingService
from .trading.strategy import Strategy


#: Seconds between GIL hand-overs while the report is written (see ``Runtime._finish``).
REPORT_SWITCH_INTERVAL = RUN_SWITCH_INTERVAL

class Progress:
    """The progress of a replay: a rich progress bar on a terminal (sharing the console with the
    log lines), a log line every 5 s otherwise."""

    def __init__(self, start: Any, end: Any, every: float = 5.0) -> None:
        self.start, self.end = start, end
        self.every = every
        self.console = console()
        self.tty = self.console.is_terminal
        self._next = 0.0
        self._t0 = time.monotonic()
        self.last_line = ""
        self._bar: Any = None
        self._task: Any = None

    def fraction(self, now: Any) -> float:
        """How far data time *now* is between the replay's start and end (0 .. 1)."""
        if self.start is not None and self.end is not None and now is not None and self.end > self.start:
            return min(1.0, max(0.0, (now - self.start) / (self.end - self.start)))
        return 0.0

    def line(self, now: Any, bars: int) -> str:
        """The progress text at data time *now* after *bars* bars."""
        frac = self.fraction(now)
        filled = int(frac * 30)
        rate = bars / max(1e-9, time.monotonic() - self._t0)
        when = now.strftime("%Y-%m-%d %H:%M") if now is not None else "-"
        return f"replay [{'#' * filled}{'.' * (30 - filled)}] {frac * 100:5.1f}%  {when}  {bars:,} bars  {rate:,.0f} bars/s"

    def update(self, now: Any, bars: int, force: bool = False) -> None:
        """Redraw the bar (terminal), or log a line when due or *force*d; *force* also ends the bar.
        (Called once per time step: the line is only formatted when it is logged.)"""
        if self.tty:
            from rich.progress import BarColumn, Progress as Bar, TextColumn, TimeElapsedColumn

            if self._bar is None:
                self._bar = Bar(TextColumn("replay"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
                                TextColumn("{task.fields[when]}"), TextColumn("{task.fields[bars]:,} bars"),
                                TimeElapsedColumn(), console=self.console, transient=False)
                self._task = self._bar.add_task("replay", total=1000, when="-", bars=0)
                self._bar.start()
            when = now.strftime("%Y-%m-%d %H:%M") if now is not None else "-"
            self._bar.update(self._task, completed=int(self.fraction(now) * 1000), when=when, bars=bars)
            if force:
                self._bar.stop()
                self._bar = None
            return
        t = time.monotonic()
        if not force and t < self._next:
            return
        self._next = t + self.every
        self.last_line = self.line(now, bars)
        logger.info(self.last_line)

    def close(self) -> None:
        """Stop a live bar that is still drawn (an interrupted run)."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


class Runtime:
    """The whole middleware process.

    :param settings: effective settings
    :param plugins: plugins to load (``None`` = the configured default)
    :param strict: any plugin failure is fatal
    :param isolate: plugins to run in their own processes
    :param exit_at_end: return from ``wait()`` when the replay ends (the report is written first)
    :param strategies: extra strategy objects to run beside those of the plugins (for embedding)
    :param start_clock: start the replay as soon as everything is up (without strategies: at the first
        subscription); False: only ``start_replay()`` starts it
    :param require_strategy: refuse to start when the plugins leave no strategy to run
    :param bars_per_second: pace the replay at about this many bars of the strategies' finest
        interval per second (instead of ``marketdata.replay_speed``)
    :param dashboard: serve the live dashboard and ``/metrics`` on this 127.0.0.1 port (0 = any free one;
        None = no dashboard); see ``self.dashboard.login_url``
    :param host: the (not yet started) ``PluginHost`` to run, e.g. from ``aitrados.pluginhost.cli.host_from_args``;
        None = one built from *plugins*, *strict* and *isolate*
    """

    def __init__(self, settings: Settings, *, plugins: list[str] | None = None, strict: bool | None = None,
                 isolate: list[str] | tuple[str, ...] = (), exit_at_end: bool = True,
                 strategies: list[Strategy] | tuple[Strategy, ...] = (), start_clock: bool = True,
                 require_strategy: bool = False, bars_per_second: float | None = None,
                 dashboard: int | None = None, host: PluginHost | None = None) -> None:
        self.settings = settings
        self.start_clock = start_clock
        self.extra_strategies = list(strategies)
        self.plugin_names = plugins
        self.strict = strict
        self.isolate = list(isolate)
        self.exit_at_end = exit_at_end
        self.require_strategy = require_strategy
        self.bars_per_second = bars_per_second
        #: True when the last report was written for a run interrupted before its end.
        self.partial = False
        self.mw = Middleware(settings, quiet=exit_at_end and bool(plugins or strategies))
        self._given_host = host
        self.host: Any = None
        self.replay: Any = None
        self.provider = ""
        self.hub: MarketDataHub | None = None
        self.trading: TradingRuntime | None = None
        self.report_paths: dict[str, Path] = {}
        self.failure: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._done = threading.Event()
        self._stop_req: asyncio.Event | None = None
        self.progress: Progress | None = None
        self.dashboard_port = dashboard
        self.dashboard_any_port = False  # the CLI's default port falls back to a free one when busy
        self.dashboard: Any = None
        self.prices = PriceHistory()
        #: The collector's hold for this run: start-up objects frozen from when the runtime is up until
        #: the replay's report is written (or the runtime stops); see ``aitrados.collector``.
        self.collector = RunCollector()
        #: The run's hold on the GIL's switch interval (short while the run is on; ``aitrados.gil``).
        self.switch = RunSwitchInterval()

    # ------------------------------------------------------------------ start
    def start(self, timeout: float = 120.0) -> Runtime:
        """Start every part; raises with a clear message if one cannot start."""
        self.mw.start()
        try:
            host = self._given_host or PluginHost(self.settings, names=self.plugin_names, strict=self.strict,
                                                  isolate=self.isolate)
            self.host = host.start(self.mw)
            if self.host.supervisor is not None:  # isolated workers list their strategies once ready
                self.host.supervisor.wait_ready(self.settings.plugin_host.worker_start_timeout)
            if self.require_strategy and not self.strategies() and not self.remote_strategies():
                raise RuntimeError(f"plugin(s) {', '.join(self.plugin_names or [])} registered no strategy: nothing "
                                   "to backtest (`aitrados plugins` lists each plugin's strategies); "
                                   "pass --serve to serve data and RPC without one")
            self._start_provider()
            if self.dashboard_port is not None:
                from .dashboard.launch import start_dashboard

                self.dashboard = start_dashboard(self.mw, self.dashboard_port, any_port_if_busy=self.dashboard_any_port)
            self._thread = threading.Thread(target=self._thread_main, name="aitrados-runtime", daemon=True)
            self._thread.start()
            if not self._ready.wait(timeout):
                raise TimeoutError(f"the runtime did not start within {timeout:g}s")
            if self.failure is not None:
                raise self.failure
            self._announce_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _announce_ready(self, timeout: float) -> None:
        """Wait until the router lists every service of the run, then serve ``runtime`` (what
        ``aitrados status --wait`` waits for) and log one "ready" line."""
        want = {"chart", "mtf", "trading", "plugins", *self.host.context.services}
        deadline = time.monotonic() + timeout
        with self.mw.rpc_client(timeout=5.0) as c:
            while True:
                have = set(c.call("middleware", "services"))
                if want <= have:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"services {', '.join(sorted(want - have))} did not register within {timeout:g}s")
                time.sleep(0.05)
        self.mw.serve(RuntimeService(self))
        logger.info("ready: services {}; plugins {}", ", ".join(sorted(want | {"runtime"})),
                    ", ".join(self.host.registry.loaded()) or "none")

    @property
    def done(self) -> bool:
        """True once the run is over (the replay ended and its report was written, or it failed)."""
        return self._done.is_set()

    def _key(self) -> str | None:
        k = self.settings.secret_key
        return k.get_secret_value() if k else None

    def _start_provider(self) -> None:
        md = self.settings.marketdata
        self.provider = md.resolve_provider(self._key())
        if self.provider == "replay":
            from .marketdata.replay_server import ReplayServerThread

            md = daily_profile(md, self.all_needs())
            if self.bars_per_second:
                md = md.model_copy(update={"replay_speed": self.bars_per_second * bar_seconds(self.all_needs())})
            md = md.model_copy(update={"replay_autostart": "manual"})
            if md.replay_process:
                from .marketdata.replay_process import ReplayServerProcess

                self.replay = ReplayServerProcess(md, log_level=self.settings.log_level)
            else:
                self.replay = ReplayServerThread(md)
            self.replay.routine_level = self.mw.routine_level
            self.replay.start()
            self.http_url, self.ws_url = self.replay.server.http_url, self.replay.server.ws_url
            logger.log(self.mw.routine_level, "market data: local replay server at {} (no key: embedded default)",
                       self.http_url)
        else:
            self.http_url, self.ws_url = md.http_base_url, md.ws_url
            logger.info("market data: AiTrados cloud at {}", self.http_url)

    def strategies(self) -> list[Strategy]:
        """The strategies to run: those of in-process plugins (``register_strategies``), then the extra ones."""
        get = getattr(self.host, "strategies", None)
        return ([s for _, s in get()] if get else []) + self.extra_strategies

    def remote_strategies(self) -> list[tuple[str, str, Any]]:
        """``(plugin, strategy, needs)`` of the strategies isolated plugins run in their own processes."""
        get = getattr(self.host, "remote_strategies", None)
        return get() if get else []

    def all_needs(self) -> list[Any]:
        """What every strategy, in-process or isolated, needs (symbols, intervals, windows, groups)."""
        return [st.needs() for st in self.strategies()] + [n for _, _, n in self.remote_strategies()]

    def _risk_checks(self) -> list[Any]:
        checks: list[Any] = []
        ctx = self.host.context
        for name, rule in ctx.risk_rules.items():
            checks.append((name, rule))
        if self.host.checks_orders:
            host = self.host

            def plugins_check(order: Any, context: Any) -> Any:
                r = host.check_order(order, context)
                if r.plugin is None and r.accepted:
                    return None
                return True if r.accepted else f"{r.plugin}: {r.reason}"

            checks.append(("check_order hooks", plugins_check))
        return checks

    def _build_engine(self, strategies: list[Strategy]) -> TradingEngine:
        engine = engine_from_settings(strategies, self.settings.trading)
        for name, check in self._risk_checks():
            engine.risk.add_check(check, name=name)
        return engine

    # ------------------------------------------------------------------ the runtime loop
    def _thread_main(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self.failure = exc
            logger.exception("runtime stopped by an error: {}", exc)
        finally:
            self._ready.set()
            self._done.set()

    async def _main(self) -> None:
        """The runtime's loop: build the parts, serve them, subscribe what the strategies need, run
        the replay to its end (or a stop), then stop the parts."""
        self._loop = asyncio.get_running_loop()
        self._stop_req = asyncio.Event()
        strategies, remote, needs = self.strategies(), self.remote_strategies(), self.all_needs()
        pub, http, hub, engine, trading = self._build_parts(strategies, needs)
        trading.signal_stage = await asyncio.to_thread(SignalStage.of, self.host)  # signal modules, in step (may ask workers)
        workers = self._service_workers(hub, trading, http)
        try:
            for w in workers:
                await asyncio.to_thread(w.start)
                self.mw.workers.append(w)
            await self._subscribe_needs(hub, needs)
            names = self._announce_strategies(strategies, remote, needs)
            await self._arm_replay(names, remote, trading)
            self.collector.hold()  # everything above lives as long as the run: out of the collector's walks
            self.switch.hold()  # the router and services in this process get the GIL within 0.5 ms
            self._ready.set()
            await self._run_to_end(hub, engine, trading, names)
        finally:
            self.collector.release()
            self.switch.release()
            for w in workers:
                await asyncio.to_thread(w.stop)
                if w in self.mw.workers:
                    self.mw.workers.remove(w)
            await hub.stop()
            pub.close()

    def _build_parts(self, strategies: list[Strategy], needs: list[Any]) -> tuple[
            Publisher, AsyncAitradosHTTPClient, MarketDataHub, TradingEngine, TradingRuntime]:
        """The publisher, the data provider's HTTP client, the market-data hub and the trading
        engine and runtime, wired together (the hub feeds the trading runtime, progress and prices)."""
        s = self.settings
        key = self._key() or "local-replay"
        pub = Publisher(self.mw.endpoints().publish, bus=s.bus, context=self.mw.context)
        http = AsyncAitradosHTTPClient(self.http_url, key, settings=s.marketdata)
        window = max([n.window for n in needs] + [150])  # default chart length: the longest need, at least 150
        # our own replay server pushes bars as msgpack when asked (decoded in C); the cloud keeps JSON
        hub = self.hub = MarketDataHub(pub, http, self.ws_url, key, window_size=window,
                                       push_encoding="msgpack" if self.provider == "replay" else "json")
        engine = self._build_engine(strategies)
        interval = next((iv for n in needs for iv in n.intervals), "DAY")
        # strategies that block, and plugin risk checks (which may wait on other processes), run off the loop
        offload = any(getattr(st, "blocking", False) for st in strategies) or self.host.checks_orders
        trading = self.trading = TradingRuntime(engine, pub, interval=interval, offload=offload)
        hub.consumers.append(trading)  # its hub_kinds: chart events only for on_chart
        hub.consumers.append(self._on_progress)
        hub.consumers.append(self.prices.record)
        return pub, http, hub, engine, trading

    def _service_workers(self, hub: MarketDataHub, trading: TradingRuntime,
                         http: AsyncAitradosHTTPClient) -> list[ServiceWorker]:
        """Workers of the ``chart``, ``mtf``, ``trading`` and ``http`` services: their own threads
        keep heartbeats going; the methods run on this loop."""
        ep = self.mw.endpoints()
        return [ServiceWorker(svc, ep.rpc_backend, bus=self.settings.bus, context=self.mw.context, loop=self._loop,
                              **self.mw.worker_credentials())
                for svc in (ChartService(hub), AlignService(hub), TradingService(trading), HTTPService(http))]

    @staticmethod
    async def _subscribe_needs(hub: MarketDataHub, needs: list[Any]) -> None:
        """Start the hub on the news and calendar of the needed symbols' countries, then hydrate and
        subscribe every chart and group the strategies declare."""
        symbols = sorted(needed_symbols(needs))
        countries = sorted({parse_full_symbol(fs)[1] for fs in symbols})
        news = sorted({":".join(parse_full_symbol(fs)[:2]) + ":*" for fs in symbols})
        # calendar: each release, and its preview a day ahead (strategies can stand aside before it)
        await hub.start(news=news, events=[t for c in countries for t in (f"{c}:*", f"{c}:*:1DAY")])
        for n in needs:
            for fs in n.symbols:
                for iv in n.intervals:
                    await hub.add_chart(fs, iv, max(n.window, 2) if n.window else None)
            for name, members in n.groups.items():
                await hub.add_group(name, members)

    @staticmethod
    def _announce_strategies(strategies: list[Strategy], remote: list[tuple[str, str, Any]],
                             needs: list[Any]) -> list[str]:
        """Log what each strategy runs on (or that none is loaded); returns their names."""
        names = [st.strategy_name for st in strategies] + [f"{name} (isolated)" for _, name, _ in remote]
        if names:
            logger.info("strategies: {}", ", ".join(f"{nm}: {', '.join(n.symbols) or 'groups'} {', '.join(n.intervals)}"
                                                    for nm, n in zip(names, needs)))
        else:
            logger.warning("no strategy loaded: the middleware serves data and RPC only "
                           "(`aitrados run --plugins sma_cross` runs the sample strategy)")
        return names

    async def _arm_replay(self, names: list[str], remote: list[tuple[str, str, Any]], trading: TradingRuntime) -> None:
        """With a replay: show progress; with strategies, wait for the isolated ones to attach and
        start the clock; without, serve and let the first subscriber start it."""
        if self.replay is None:
            return
        st = self.replay.server.state()
        self.progress = Progress(_ts(st.get("start")), _ts(st.get("end")))
        if names:
            await self._wait_attached([name for _, name, _ in remote], trading)
            if self.start_clock:
                self.start_replay()
        else:  # nothing to replay for: serve, and let the first subscriber start the clock
            self.exit_at_end = False
            if self.start_clock:  # (start_clock=False: only start_replay() starts it)
                self.replay.server.autostart = "first_subscribe"

    async def _run_to_end(self, hub: MarketDataHub, engine: TradingEngine, trading: TradingRuntime,
                          names: list[str]) -> None:
        """Wait for the replay's end or a stop request; at the end write the report (and exit when
        ``exit_at_end``), on an interrupted replay with strategies write the partial report."""
        assert self._stop_req is not None
        ended = asyncio.ensure_future(hub.ended.wait())
        stop = asyncio.ensure_future(self._stop_req.wait())
        await asyncio.wait({ended, stop}, return_when=asyncio.FIRST_COMPLETED)
        if hub.ended.is_set():
            if names:  # the report (a PNG included) is written off the loop: services keep answering
                await asyncio.to_thread(self._finish)
                self.failure = self.failure or self._strategy_failure()
            self.collector.release()  # the replay is over: the collector's own settings again
            self.switch.release()
            if self.exit_at_end:
                self._done.set()
            await self._stop_req.wait()
        elif names and self.replay is not None and self.mw.signal_received:
            # interrupted mid-replay: the report so far, marked partial
            async with trading.lock:
                trading.finished = build_report(engine.broker, trading.interval)
            await asyncio.to_thread(self._finish, True)

    async def _wait_attached(self, names: list[str], trading: TradingRuntime, timeout: float = 60.0) -> None:
        """Wait until every isolated strategy attached to ``trading`` (so it sees the first step)."""
        deadline = time.monotonic() + timeout
        while any(n not in trading.remote for n in names):
            if time.monotonic() > deadline:
                missing = [n for n in names if n not in trading.remote]
                raise RuntimeError(f"isolated strategies {', '.join(missing)} did not attach to the trading service "
                                   f"within {timeout:g}s; see the worker's log lines above")
            await asyncio.sleep(0.05)
        if names:
            logger.info("isolated strategies attached: {}", ", ".join(names))

    def start_replay(self) -> None:
        """Start the replay clock (the runtime does it itself unless built with ``start_clock=False``)."""
        if self.replay is not None:
            self.replay.start_clock()

    @consumes(Kind.STEP)
    def _on_progress(self, kind: str, obj: Any) -> None:
        if kind == Kind.STEP and self.progress is not None and self.hub is not None:
            self.progress.update(obj[1], self.hub.counts["bars_in"])

    def _finish(self, partial: bool = False) -> None:
        """Write the report and print the summary (in a worker thread, once the replay ended or,
        *partial*, once it was interrupted)."""
        assert self.trading is not None and self.hub is not None
        if self.progress is not None:
            self.progress.update(self.hub.step_time, self.hub.counts["bars_in"], force=True)
        report = self.trading.finished
        if report is None:
            return
        bars, published, events = self.hub.counts["bars_in"], self.hub.counts["published"], self.trading.events_published
        report.errors = self.trading.callback_errors()
        report.partial = self.partial = partial
        folder = Path(self.settings.trading.report_dir)
        # The run's objects (price history, equity curve, fills: millions at scale) stay until the
        # report is written: put them out of the collector's reach, and collect nothing while the
        # report allocates (its objects hold no cycles), or each collection walks them holding the
        # GIL the RPC router in this process needs (stalls of 100+ ms measured at 390,000 bars).
        # Freed objects are still freed by reference counting; afterwards they go back to the
        # collector (``unfreeze``), so a process that lives on (tests, embedding) leaks nothing,
        # unless the process had frozen objects itself (the ``aitrados`` command does): then they stay.
        thaw = gc.get_freeze_count() == 0
        gc.freeze()
        collecting = gc.isenabled()
        gc.disable()
        # The report is CPU-bound Python: a thread waiting for the GIL (the router, a service,
        # a client in this process) waits up to the switch interval at each hop, 5 ms by default.
        switch = sys.getswitchinterval()
        sys.setswitchinterval(min(switch, REPORT_SWITCH_INTERVAL))
        try:
            self.report_paths = self.trading.write_report(folder, title=", ".join(
                st.strategy_name for st in self.trading.engine.strategies) or "Equity")
            self.report_paths["html"] = write_html_report(report, self.report_paths["folder"] / "report.html",
                                                          self.prices.as_dict())
        finally:
            sys.setswitchinterval(switch)
            if thaw:
                gc.unfreeze()
            if collecting:
                gc.enable()
        print_summary(report)
        print(f"report: {self.report_paths['folder'].resolve()} (report.html, trades.csv, equity.png, equity.csv, "
              f"metrics.json, summary.txt; {folder.resolve() / 'latest'} is the latest run)", flush=True)
        logger.info("replay {}: {} bars in, {} messages published, {} orders/fills/position events",
                    "interrupted" if partial else "finished", bars, published, events)

    def _strategy_failure(self) -> BaseException | None:
        """An error when strategy callbacks raised during the run (unless the settings allow it)."""
        errs = self.trading.callback_errors() if self.trading is not None else {}
        if not errs or self.settings.trading.allow_strategy_errors:
            return None
        return RuntimeError(f"{sum(errs.values())} strategy callback error(s): "
                            + "; ".join(f"{k} x{n}" for k, n in sorted(errs.items()))
                            + " (set trading.allow_strategy_errors=true to exit 0 anyway)")

    # ------------------------------------------------------------------ run / stop
    def wait_replay(self, timeout: float | None = None) -> bool:
        """Block until the replay ended and its report is written (parts keep running); False on timeout."""
        return self._done.wait(timeout)

    def wait(self) -> int:
        """Block until the replay ends (when ``exit_at_end``), a signal, or a failure; stops; returns the exit code."""
        while not self._done.wait(0.2):
            if self.mw.stop_requested:
                break
            if self.mw.failure is not None:
                self.failure = self.mw.failure
                break
        code = 1 if self.failure is not None else 0
        if self.failure is not None:
            logger.error("stopping after a failure: {}", self.failure)
        interrupted = self.exit_at_end and not self._done.is_set() and self.mw.signal_received is not None
        self.stop()
        if interrupted and not self.failure:  # a backtest cut short: 130 after Ctrl-C, 143 after SIGTERM
            return 128 + int(self.mw.signal_received or 2)
        return code

    def stop(self) -> None:
        """Stop everything in reverse order."""
        if self.progress is not None:
            self.progress.close()
        if self._loop is not None and self._stop_req is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._stop_req.set)
            except RuntimeError:
                pass
        if self._thread is not None:
            self._thread.join(15)
            self._thread = None
        if self.dashboard is not None:
            self.dashboard.stop()
            self.dashboard = None
        if self.host is not None:
            self.host.stop()
            self.host = None
        if self.replay is not None:
            self.replay.stop()
            self.replay = None
        self.mw.stop()


class RuntimeService(Service):
    """RPC ``runtime``: registered once every other service and plugin of the run is up."""

    name = "runtime"

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt

    def ready(self) -> dict[str, Any]:
        """``{ready, provider, strategies, replay_done}`` of this run."""
        return {"ready": True, "provider": self._rt.provider,
                "strategies": [st.strategy_name for st in self._rt.strategies()]
                + [name for _, name, _ in self._rt.remote_strategies()],
                "replay_done": self._rt.done}


def needed_symbols(needs: list[Any]) -> set[str]:
    """Every symbol the strategies' *needs* name, alone or in a group (as written)."""
    return {fs for n in needs for fs in n.symbols} | {fs for n in needs for g in n.groups.values() for fs in g}


def needed_intervals(needs: list[Any]) -> set[str]:
    """Every interval the strategies' *needs* name, for their symbols or their groups' members."""
    return {iv for n in needs for iv in n.intervals} | {iv for n in needs for g in n.groups.values()
                                                        for ivs in g.values() for iv in ivs}


def daily_profile(md: MarketDataSettings, needs: list[Any]) -> MarketDataSettings:
    """The replay window for daily backtests of the data files.

    When every symbol the strategies need is a daily (or coarser) file series — the bundled
    S&P 500 / NASDAQ history, or the user's own files — the replay covers the files' span
    (bounded by ``replay_start`` / ``replay_end`` when set, e.g. by ``--from`` / ``--to``) and
    generates no 1-minute bars. Otherwise *md* as given. The files are not read here: the replay
    store resolves ``data_start`` / ``data_end`` when it reads them (each file is read once).
    """
    symbols = {normalize_full_symbol(fs) for fs in needed_symbols(needs)}
    if not symbols or any(is_intraday(iv) for iv in needed_intervals(needs)):
        return md
    if not symbols <= daily_file_symbols(md):
        return md
    start = md.replay_start if md.replay_start is not None else "data_start"
    end = md.replay_end if md.replay_end is not None else "data_end"
    logger.debug("daily replay of {} from {} to {}", ", ".join(sorted(symbols)), start, end)
    return md.model_copy(update={"replay_symbols": [], "replay_start": start, "replay_end": end})


def daily_file_symbols(md: MarketDataSettings) -> set[str]:
    """The symbols with a daily (or coarser) series among the bundled files (when served) and the
    user's ``replay_bar_files``, named by file name or by their ``{path, full_symbol, interval}``."""
    files: dict[tuple[str, str], Path] = dict(bundled_bar_files()) if md.replay_bundled else {}
    for f in md.replay_bar_files:
        path, fsym, fiv = bar_file_spec(f)
        key = (normalize_full_symbol(fsym), normalize_interval(fiv or "DAY")) if fsym else symbol_from_filename(path)
        if key:
            files[key] = path
    return {fs for (fs, iv) in files if not is_intraday(iv)}


def print_summary(report: Any) -> None:
    """The run summary on stdout: a rich table on a terminal, the plain text table otherwise."""
    from rich.console import Console
    from rich.table import Table

    out = Console(highlight=False)
    if not out.is_terminal:
        print(report.summary(), flush=True)
        return
    text = report.summary().splitlines()
    table = Table(title="Run summary", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    for row in text:
        if row.startswith("| "):
            k, v = (c.strip() for c in row.strip("|").split("|", 1))
            table.add_row(k, v)
    out.print(table)
    for row in text:
        if not row.startswith(("|", "+", "Run summary")):
            out.print(row, style="bold red" if "error" in row or "PARTIAL" in row else None)


def bar_seconds(needs: list[Any]) -> float:
    """Seconds of the finest interval the strategies need (a day when they need none)."""
    spans = {"DAY": 86400.0, "WEEK": 7 * 86400.0, "MON": 30 * 86400.0}
    out = []
    for iv in needed_intervals(needs):
        m = interval_minutes(iv)
        out.append(m * 60.0 if m else spans.get(normalize_interval(iv), 86400.0))
    return min(out) if out else 86400.0


def _ts(v: Any) -> Any:
    from .marketdata.models import parse_timestamp

    return parse_timestamp(v) if v else None
