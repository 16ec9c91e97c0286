"""Plugins in their own processes: the ``Supervisor`` of the worker processes.

A worker (:mod:`aitrados.pluginhost.worker`) is ``python -m aitrados.pluginhost.worker
--plugins NAME --connect ADDRESS`` (the same as ``aitrados worker ...``): it loads the
plugins, connects to the middleware whose RPC frontend is ADDRESS, receives the same events as
in-process plugins and serves their services plus a control service ``worker.<name>`` (ping,
status, check_order). It tells its supervisor on stdout that it is ready (``READY_LINE``) or
why it failed (``FAILED_LINE``).

The ``Supervisor`` spawns one worker per isolated plugin, gives it its settings on stdin and
keeps that pipe open: when the host process dies, even by SIGKILL, the worker reads EOF and
exits (it also polls its parent pid). A worker that dies is logged and restarted with
exponential backoff; after ``restart_limit`` restarts in a row the supervisor gives up,
loudly. A worker that cannot load its plugin is not restarted: that would fail again.
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from loguru import logger

from .settings import PluginHostSettings

#: stdout line prefixes of the worker -> supervisor protocol.
READY_LINE = "AITRADOS-WORKER-READY "
FAILED_LINE = "AITRADOS-WORKER-FAILED "
#: Exit code of a worker whose plugins could not be loaded (not restarted).
EXIT_LOAD_FAILED = 3
#: The module a worker process runs (``python -m``).
WORKER_MODULE = "aitrados.pluginhost.worker"


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
            from ..bus.tokens import token_path

            cfg["bus"] = s.bus.model_dump(mode="json")
            # where the middleware's service token is: the worker proves with it that it may serve and attach
            cfg["bus"]["service_token_file"] = str(token_path(s.bus, "service"))
        if getattr(s, "log_level", None):
            cfg["log_level"] = s.log_level
        return cfg

    def command(self, w: WorkerState) -> list[str]:
        """The command line that starts worker *w*."""
        return [self.python, "-m", WORKER_MODULE, "--plugins", ",".join(w.plugins), "--connect",
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
