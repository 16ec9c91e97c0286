"""An isolated plugin worker process (``aitrados worker``, ``python -m aitrados.pluginhost.worker``).

It loads its plugins, connects to the middleware whose RPC frontend it is given (the other
addresses are asked from the middleware), receives the same events as in-process plugins,
serves their services plus a control service ``worker.<name>``, runs their strategies against
the middleware's ``trading`` service, and tells its supervisor (:mod:`aitrados.pluginhost.isolation`)
on stdout that it is ready or why it failed. It stops when its parent dies (stdin EOF or a
new parent pid), on SIGINT/SIGTERM, and never hangs on the way out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlparse

from loguru import logger

from .errors import PluginError
from .isolation import EXIT_LOAD_FAILED, FAILED_LINE, READY_LINE


def discover_endpoints(connect: str, bus: Any, timeout: float) -> Any:
    """Ask the middleware at RPC frontend *connect* for its other addresses over the same transport."""
    from ..bus.addresses import Endpoints
    from ..bus.client import RPCClient
    from ..bus.errors import RPCTimeoutError

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


class WorkerFailed(PluginError):
    """The worker cannot run its plugins (they do not load, or the configuration is wrong):
    restarting it would fail again, so it exits with ``EXIT_LOAD_FAILED``."""


def run_worker(args: argparse.Namespace, settings: Any = None) -> int:
    """Run the worker described by *args* until stopped; returns the exit code.

    The steps: settings (from stdin when the supervisor started it), the stop signal, the
    plugins, the connection, the strategies, the ready line; then it waits to be stopped.
    """
    settings = worker_settings(args, settings)
    names = [n.strip() for n in args.plugins.split(",") if n.strip()]
    name = args.name or "+".join(names)
    stop = stop_signal(args)
    timeout = getattr(getattr(settings, "plugin_host", None), "worker_start_timeout", 30.0)
    try:
        host, infos = load_plugins(settings, names, name)
        endpoints = connect(host, args, settings, timeout)
    except WorkerFailed as exc:
        print(FAILED_LINE + json.dumps({"reason": str(exc)}), flush=True)
        logger.error("worker {!r}: {}", name, exc)
        return EXIT_LOAD_FAILED
    runner = None
    try:
        _wait_control(host, name)
        strategies = host.strategies()
        runner = start_strategies(strategies, endpoints, settings, timeout)
        announce_ready(names, infos, strategies)
        logger.info("worker {!r} running plugin(s) {} (pid {})", name, ", ".join(names), os.getpid())
        stop.wait()
    finally:
        shut_down(host, runner)
    return 0


def worker_settings(args: argparse.Namespace, settings: Any) -> Any:
    """The worker's settings: the supervisor's (one JSON line on stdin), else *settings* or the
    environment's; ``--token-file`` applied and logging set up. Returns the settings."""
    from ..log import setup_logging
    from ..settings import load_settings

    config: dict[str, Any] = {}
    if args.config_stdin:
        line = sys.stdin.readline()
        config = json.loads(line) if line.strip() else {}
    if config or settings is None:
        settings = load_settings(**config)
    if getattr(args, "token_file", None):
        settings.bus.service_token_file = args.token_file
    setup_logging(settings.log_level)
    return settings


def stop_signal(args: argparse.Namespace) -> threading.Event:
    """An event set when the worker must stop: its parent died, or SIGINT/SIGTERM (main thread only)."""
    import signal

    stop = threading.Event()
    _watch_parent(args.parent_pid, args.config_stdin, stop)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    return stop


def load_plugins(settings: Any, names: list[str], name: str) -> tuple[Any, list[Any]]:
    """The worker's ``PluginHost`` with every plugin loaded, and their infos.

    Raises ``WorkerFailed`` naming each plugin that did not load and why.
    """
    from .errors import PluginError
    from .host import PluginHost

    try:
        host = PluginHost(settings, names=names, strict=False, in_worker=True, worker_name=name)
        infos = host.load()
    except PluginError as exc:
        raise WorkerFailed(str(exc)) from exc
    bad = [i for i in infos if i.status != "loaded"]
    if bad:
        raise WorkerFailed("; ".join(f"plugin {i.name!r}: {i.reason}" for i in bad))
    return host, infos


def connect(host: Any, args: argparse.Namespace, settings: Any, timeout: float) -> Any:
    """Start *host* against the middleware ``--connect`` names (else the local one); returns its ``Endpoints``.

    Raises ``WorkerFailed`` on a configuration error (keys, addresses): restarting would not help.
    """
    from ..bus.addresses import endpoints_for
    from ..bus.security import SecurityError

    try:
        endpoints = (discover_endpoints(args.connect, settings.bus, timeout) if args.connect
                     else endpoints_for(settings.bus, args.transport))
        host.start(endpoints)
    except (SecurityError, ValueError) as exc:
        raise WorkerFailed(f"cannot connect: {exc}") from exc
    return endpoints


def start_strategies(strategies: list[tuple[str, Any]], endpoints: Any, settings: Any, timeout: float) -> Any:
    """Run *strategies* against the middleware's account through its ``trading`` service.

    Returns the started ``RemoteStrategyRunner``, or None when there are none.
    """
    if not strategies:
        return None
    from ..trading.remote import RemoteStrategyRunner

    return RemoteStrategyRunner([s for _, s in strategies], endpoints, settings.bus, attach_timeout=timeout).start()


def announce_ready(names: list[str], infos: list[Any], strategies: list[tuple[str, Any]]) -> None:
    """Print the ready line the supervisor waits for: pid, plugins, hooks and strategies with their needs."""
    import msgspec

    hooks = sorted({h for i in infos for h in i.hooks})
    listed = [{"plugin": p, "name": s.strategy_name, "needs": msgspec.to_builtins(s.needs())}
              for p, s in strategies]
    print(READY_LINE + json.dumps({"pid": os.getpid(), "plugins": names, "hooks": hooks,
                                   "strategies": listed}), flush=True)


def shut_down(host: Any, runner: Any) -> None:
    """Stop the strategies and the host; a timer ends the process if that hangs (never hang on the way out)."""
    killer = threading.Timer(15.0, lambda: os._exit(1))
    killer.daemon = True
    killer.start()
    if runner is not None:
        runner.stop()
    host.stop()


def _wait_control(host: Any, name: str) -> None:
    """Block until this worker's control service answers through the router."""
    from ..bus.errors import BusError

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
    """``python -m aitrados.pluginhost.worker``: the same as ``aitrados worker``."""
    p = argparse.ArgumentParser(prog="aitrados worker", description="Run plugins in this process, connected to a middleware.")
    add_worker_arguments(p)
    return run_worker(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
