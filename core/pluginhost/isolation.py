"""Plugins in their own processes: the worker (``aitrados worker``) and its supervisor.

A worker is ``python -m aitrados.isolation --plugins NAME --connect ADDRESS`` (the same as
``aitrados worker ...``): it loads the plugins, connects to the middleware whose RPC
frontend is ADDRESS (the other addresses are asked from the middleware), receives the same
events as in-process plugins and serves their services plus a control service
``worker.<name>`` (ping, status, check_order).

The ``Supervisor`` spawns one worker per isolated plugin, gives it its settings on stdin and
keeps that pipe open: when the host process dies, even by SIGKILL, the worker reads EOF and
exits (it also polls its parent pid). A worker that dies is logged and restarted with
exponential backoff; after ``restart_limit`` restarts in a row the supervisor gives up,
loudly. A worker that cannot load its plugin is not restarted: that would fail again.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from loguru import logger

from .plugin_settings import PluginHostSettings

#: stdout line prefixes of the worker -> supervisor protocol.
READY_LINE = "AITRADOS-WORKER-READY "
FAILED_LINE = "AITRADOS-WORKER-FAILED "
#: Exit code of a worker whose plugins could not be loaded (not restarted).
EXIT_LOAD_FAILED = 3


def backoff_delay(restarts: int, initial: float, maximum: float) -> float:
    """Seconds to wait before restart number *restarts* (1-based): initial * 2**(n-1), capped."""
    return min(maximum, initial * (2 ** max(0, restarts - 1)))


@dataclass
class WorkerState:
    """One supervised worker process and its history."""

    name: str
    plugins: list[str]
    status: str = "new"  # starting | running | restarting | failed | gave up | stopped
    reason: str | None = None
    proc: subprocess.Popen[str] | None = None
    pid: int | None = None
    starts: int = 0
    restarts: int = 0
    started_at: float = 0.0
    next_start: float = 0.0
    hooks: list[str] = field(default_factory=list)
    #: Strategies the worker runs: ``{"plugin", "name", "needs"}`` (``StrategyNeeds`` as a map).
    strategies: list[dict[str, Any]] = field(default_factory=list)
    stderr_tail: deque[str] = field(default_factory=lambda: deque(maxlen=30))
    ready: threading.Event = field(default_factory=threading.Event)
    readers: list[threading.Thread] = field(default_factory=list)

    @property
    def service(self) -> str:
        """The RPC name of this worker's control service."""
        return f"worker.{self.name}"

    def to_dict(self) -> dict[str, Any]:
        """Plain data for status output."""
        return {"name": self.name, "plugins": self.plugins, "status": self.status, "reason": self.reason,
                "pid": self.pid, "starts": self.starts, "restarts": self.restarts, "hooks": self.hooks,
                "strategies": [s.get("name") for s in self.strategies]}


class Supervisor:
    """Spawns, watches, restarts and stops isolated plugin workers.

    :param settings: the host's settings (the bus, plugin_host and the plugins' own settings
        are handed to each worker on its stdin)
    :param connect: the middleware's RPC frontend address the workers connect to
    :param host_settings: restart limits and timeouts
    :param python: the interpreter that runs the workers
    """

    def __init__(self, settings: Any, connect: str, host_settings: PluginHostSettings,
                 python: str = sys.executable) -> None:
        self.settings = settings
        self.connect = connect
        self.hs = host_settings
        self.python = python
        self.workers: dict[str, WorkerState] = {}
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, name: str, plugins: list[str]) -> None:
        """Declare a worker *name* running *plugins*."""
        self.workers[name] = WorkerState(name, list(plugins))

    # ---------------------------------------------------------------- spawning
    def _config(self, w: WorkerState) -> dict[str, Any]:
        s = self.settings
        cfg: dict[str, Any] = {"plugins": {n: (getattr(s, "plugins", {}) or {}).get(n) for n in w.plugins
                                           if (getattr(s, "plugins", {}) or {}).get(n) is not None}}
        if getattr(s, "bus", None) is not None:
            from .bus.tokens import token_path

            cfg["bus"] = s.bus.model_dump(mode="json")
            # where the middleware's service token is: the worker proves with it that it may serve and attach
            cfg["bus"]["service_token_file"] = str(token_path(s.bus, "service"))
        if getattr(s, "log_level", None):
            cfg["log_level"] = s.log_level
        return cfg

    def command(self, w: WorkerState) -> list[str]:
        """The command line that starts worker *w*."""
        return [self.python, "-m", "aitrados.isolation", "--plugins", ",".join(w.plugins), "--connect",
                self.connect, "--name", w.name, "--parent-pid", str(os.getpid()), "--config-stdin"]

    def _spawn(self, w: WorkerState) -> None:
        w.ready.clear()
        w.status, w.reason = "starting", None
        w.stderr_tail.clear()
        proc = subprocess.Popen(self.command(w), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, encoding="utf-8", errors="replace", bufsize=1)
        w.proc, w.pid = proc, proc.pid
        w.starts += 1
        w.started_at = time.monotonic()
        assert proc.stdin is not None
        try:
            proc.stdin.write(json.dumps(self._config(w)) + "\n")
            proc.stdin.flush()  # the pipe stays open: its EOF tells the worker to stop
        except OSError as exc:  # it died at once; the watcher sees the exit and decides
            logger.warning("worker {!r} (pid {}) did not take its settings: {}", w.name, proc.pid, exc)
        w.readers = [threading.Thread(target=self._read_stdout, args=(w, proc), daemon=True,
                                      name=f"aitrados-worker-{w.name}-out"),
                     threading.Thread(target=self._read_stderr, args=(w, proc), daemon=True,
                                      name=f"aitrados-worker-{w.name}-err")]
        for t in w.readers:
            t.start()
        logger.info("worker {!r} started for plugin(s) {} (pid {}, start #{})", w.name, ", ".join(w.plugins),
                    proc.pid, w.starts)

    def _read_stdout(self, w: WorkerState, proc: subprocess.Popen[str]) -> None:
        try:
            self._stdout_lines(w, proc)
        except Exception as exc:  # never die silently: the watcher still sees the process exit
            logger.exception("reading worker {!r} output failed: {}", w.name, exc)

    def _stdout_lines(self, w: WorkerState, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            if line.startswith(READY_LINE):
                info = json.loads(line[len(READY_LINE):])
                if w.proc is proc:  # no lock: the watcher may hold it while it joins this thread
                    w.hooks = info.get("hooks", [])
                    w.strategies = info.get("strategies", [])
                    w.status = "running"
                    w.ready.set()
                logger.info("worker {!r} ready (pid {}), hooks: {}", w.name, proc.pid, ", ".join(w.hooks) or "none")
            elif line.startswith(FAILED_LINE):
                info = json.loads(line[len(FAILED_LINE):])
                w.reason = info.get("reason")
            elif line:
                logger.info("[worker {}] {}", w.name, line)

    def _read_stderr(self, w: WorkerState, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        try:
            for line in proc.stderr:
                w.stderr_tail.append(line.rstrip("\n"))
                sys.stderr.write(f"[worker {w.name}] {line}")
        except Exception as exc:
            logger.exception("reading worker {!r} errors failed: {}", w.name, exc)

    # ---------------------------------------------------------------- supervision
    def start(self) -> None:
        """Spawn every worker and the watcher thread (returns at once; see ``wait_ready``)."""
        with self._lock:
            for w in self.workers.values():
                self._spawn(w)
        self._thread = threading.Thread(target=self._watch, name="aitrados-supervisor", daemon=True)
        self._thread.start()
        atexit.register(self.stop)

    def wait_ready(self, timeout: float) -> bool:
        """Wait until every worker is running or has failed; True if all are running."""
        deadline = time.monotonic() + timeout
        for w in self.workers.values():
            while not w.ready.is_set() and w.status in ("starting", "restarting", "new"):
                if time.monotonic() >= deadline:
                    w.reason = w.reason or f"not ready within {timeout:g}s"
                    logger.error("worker {!r} not ready within {:g}s", w.name, timeout)
                    break
                w.ready.wait(0.05)
        return all(w.status == "running" for w in self.workers.values())

    def _watch(self) -> None:
        while not self._stopping.wait(0.05):
            try:
                with self._lock:
                    for w in self.workers.values():
                        self._check(w)
            except Exception as exc:  # the watcher must not die silently
                logger.exception("supervisor check failed: {}", exc)

    def _check(self, w: WorkerState) -> None:
        now = time.monotonic()
        if w.proc is not None and w.proc.poll() is not None and not self._stopping.is_set():
            code = w.proc.returncode
            for t in w.readers:  # the last lines (FAILED reason, traceback) are read before deciding
                t.join(1.0)
            w.proc.stdin.close() if w.proc.stdin else None  # type: ignore[func-returns-value]
            w.proc = None
            tail = " | ".join(list(w.stderr_tail)[-3:])
            if code == EXIT_LOAD_FAILED:
                w.reason = w.reason or f"could not load its plugins: {tail}"
                logger.error("worker {!r} could not load plugin(s) {}: {}; not restarting (fix the plugin or "
                             "its settings, then restart)", w.name, ", ".join(w.plugins), w.reason)
                w.status = "failed"
                w.ready.set()
                return
            if now - w.started_at >= self.hs.stable_after:
                w.restarts = 0
            w.restarts += 1
            if w.restarts > self.hs.restart_limit:
                logger.critical("GIVING UP on worker {!r} (plugin(s) {}): it died {} times in a row, last exit "
                                "code {}; its plugins no longer receive events. Last output: {}", w.name,
                                ", ".join(w.plugins), w.restarts, code, tail or "-")
                w.reason = f"died {w.restarts} times in a row (last exit code {code})"
                w.status = "gave up"
                w.ready.set()
                return
            delay = backoff_delay(w.restarts, self.hs.restart_backoff, self.hs.restart_backoff_max)
            w.status, w.reason = "restarting", f"exit code {code}"
            w.next_start = now + delay
            logger.warning("worker {!r} (plugin(s) {}) died with exit code {}; restart {}/{} in {:.2f}s",
                           w.name, ", ".join(w.plugins), code, w.restarts, self.hs.restart_limit, delay)
        elif w.status == "restarting" and w.proc is None and now >= w.next_start:
            try:
                self._spawn(w)
            except OSError as exc:
                logger.critical("GIVING UP on worker {!r}: cannot start {}: {}", w.name, self.python, exc)
                w.reason, w.status = f"cannot start: {exc}", "gave up"
                w.ready.set()

    def stop(self) -> None:
        """Stop every worker: close its stdin, then SIGTERM, then SIGKILL; no orphans."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(2)
        with self._lock:
            procs = [(w, w.proc) for w in self.workers.values() if w.proc is not None]
            for _, p in procs:
                try:
                    p.stdin.close()  # type: ignore[union-attr]
                except OSError:
                    pass
            deadline = time.monotonic() + self.hs.worker_stop_timeout
            for w, p in procs:
                try:
                    p.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    logger.warning("worker {!r} (pid {}) did not stop in time; terminating", w.name, p.pid)
                    p.terminate()
                    try:
                        p.wait(2)
                    except subprocess.TimeoutExpired:
                        p.kill()
                        p.wait(2)
                w.proc = None
                w.status = "stopped"
        atexit.unregister(self.stop)

    # ---------------------------------------------------------------- views
    def workers_with_hook(self, hook: str) -> list[WorkerState]:
        """Workers whose plugins implement *hook* (known once a worker has been ready)."""
        return [w for w in self.workers.values() if hook in w.hooks]

    def status(self) -> list[dict[str, Any]]:
        """Every worker's state."""
        with self._lock:
            return [w.to_dict() for w in self.workers.values()]


# ==================================================================== the worker process
def discover_endpoints(connect: str, bus: Any, timeout: float) -> Any:
    """Ask the middleware at RPC frontend *connect* for its other addresses over the same transport."""
    from .bus.addresses import Endpoints
    from .bus.client import RPCClient
    from .bus.errors import RPCTimeoutError

    deadline = time.monotonic() + timeout
    with RPCClient(connect, bus=bus) as c:
        while True:
            try:
                stats = c.call("middleware", "stats", timeout=min(2.0, max(0.1, deadline - time.monotonic())))
                break
            except RPCTimeoutError:
                if time.monotonic() >= deadline:
                    raise RPCTimeoutError(f"no middleware answers at {connect} within {timeout:g}s; is it running "
                                          "(`aitrados run`) and is the address its RPC frontend?") from None
    scheme = urlparse(connect).scheme
    rpc_bound, ps_bound = stats["rpc"]["bound"], stats["pubsub"]["bound"]

    def pick(addrs: list[str], what: str) -> str:
        for a in addrs:
            if a.startswith(scheme + "://"):
                if scheme == "tcp":
                    host = connect[len("tcp://"):].rsplit(":", 1)[0]
                    return f"tcp://{host}:{a.rsplit(':', 1)[1]}"
                return a
        raise RuntimeError(f"the middleware at {connect} does not bind {what} over {scheme}: {addrs}")

    return Endpoints(rpc_frontend=connect, rpc_backend=pick(rpc_bound["backend"], "the RPC backend"),
                     publish=pick(ps_bound["sub"], "the publish side"),
                     subscribe=pick(ps_bound["pub"], "the subscribe side"))


def add_worker_arguments(p: argparse.ArgumentParser) -> None:
    """The worker's command-line options (shared by ``aitrados worker``)."""
    p.add_argument("--plugins", required=True, help="comma-separated plugin names to run in this process")
    p.add_argument("--connect", help="the middleware's RPC frontend, e.g. tcp://10.0.0.5:51691 or "
                                     "ipc:///tmp/aitrados-1000/default-rpc_frontend.sock (default: from settings)")
    p.add_argument("--transport", choices=["ipc", "tcp"], default="ipc",
                   help="without --connect: reach the middleware over this transport (default ipc)")
    p.add_argument("--name", help="worker name; its control service is worker.<name> (default: the plugin names)")
    p.add_argument("--token-file", help="file holding the middleware's service token (default: "
                                        "<ipc_dir>/<name>-service.token, written by `aitrados run`); copy it "
                                        "(mode 0600) to a worker on another host")
    p.add_argument("--strict", action="store_true", help="(always on in a worker: a plugin that fails stops it)")
    p.add_argument("--parent-pid", type=int, help=argparse.SUPPRESS)
    p.add_argument("--config-stdin", action="store_true", help=argparse.SUPPRESS)


def _watch_parent(parent_pid: int | None, config_stdin: bool, stop: threading.Event) -> None:
    """Set *stop* when the parent dies (stdin EOF or a new parent pid)."""
    if config_stdin:
        def eof() -> None:
            try:
                while sys.stdin.readline():
                    pass
            except (OSError, ValueError):
                pass
            stop.set()
        threading.Thread(target=eof, daemon=True, name="aitrados-worker-stdin").start()
    if parent_pid:
        def poll() -> None:
            while not stop.wait(0.5):
                if os.getppid() != parent_pid:
                    stop.set()
        threading.Thread(target=poll, daemon=True, name="aitrados-worker-ppid").start()


def run_worker(args: argparse.Namespace, settings: Any = None) -> int:
    """Run the worker described by *args* until stopped; returns the exit code."""
    import signal

    from .bus.addresses import endpoints_for
    from .host import PluginHost
    from .log import setup_logging
    from .plugins import PluginError
    from .settings import load_settings

    config: dict[str, Any] = {}
    if args.config_stdin:
        line = sys.stdin.readline()
        config = json.loads(line) if line.strip() else {}
    if config or settings is None:
        settings = load_settings(**config)
    if getattr(args, "token_file", None):
        settings.bus.service_token_file = args.token_file
    setup_logging(settings.log_level)
    names = [n.strip() for n in args.plugins.split(",") if n.strip()]
    name = args.name or "+".join(names)
    stop = threading.Event()
    _watch_parent(args.parent_pid, args.config_stdin, stop)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())

    def failed(reason: str) -> int:
        print(FAILED_LINE + json.dumps({"reason": reason}), flush=True)
        logger.error("worker {!r}: {}", name, reason)
        return EXIT_LOAD_FAILED

    try:
        host = PluginHost(settings, names=names, strict=False, in_worker=True, worker_name=name)
        infos = host.load()
    except PluginError as exc:
        return failed(str(exc))
    bad = [i for i in infos if i.status != "loaded"]
    if bad:
        return failed("; ".join(f"plugin {i.name!r}: {i.reason}" for i in bad))
    from .bus.security import SecurityError

    timeout = getattr(getattr(settings, "plugin_host", None), "worker_start_timeout", 30.0)
    try:
        endpoints = (discover_endpoints(args.connect, settings.bus, timeout) if args.connect
                     else endpoints_for(settings.bus, args.transport))
        host.start(endpoints)
    except (SecurityError, ValueError) as exc:  # configuration: restarting would not help
        return failed(f"cannot connect: {exc}")
    runner = None
    try:
        _wait_control(host, name)
        strategies = host.strategies()
        if strategies:  # they trade against the middleware's account through its `trading` service
            import msgspec

            from .trading.remote import RemoteStrategyRunner

            runner = RemoteStrategyRunner([s for _, s in strategies], endpoints, settings.bus,
                                          attach_timeout=timeout).start()
        hooks = sorted({h for i in infos for h in i.hooks})
        listed = [{"plugin": p, "name": s.strategy_name, "needs": msgspec.to_builtins(s.needs())}
                  for p, s in strategies]
        print(READY_LINE + json.dumps({"pid": os.getpid(), "plugins": names, "hooks": hooks,
                                       "strategies": listed}), flush=True)
        logger.info("worker {!r} running plugin(s) {} (pid {})", name, ", ".join(names), os.getpid())
        stop.wait()
    finally:
        killer = threading.Timer(15.0, lambda: os._exit(1))  # never hang on the way out
        killer.daemon = True
        killer.start()
        if runner is not None:
            runner.stop()
        host.stop()
    return 0


def _wait_control(host: Any, name: str) -> None:
    """Block until this worker's control service answers through the router."""
    from .bus.errors import BusError

    deadline = time.monotonic() + 10
    while True:
        try:
            host.context.rpc.call(f"worker.{name}", "ping", timeout=1.0)
            return
        except BusError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m aitrados.isolation``: the same as ``aitrados worker``."""
    p = argparse.ArgumentParser(prog="aitrados worker", description="Run plugins in this process, connected to a middleware.")
    add_worker_arguments(p)
    return run_worker(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
