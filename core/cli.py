"""The ``aitrados`` command line: run the middleware and talk to a running one.

Subcommands: run, config, call, tail, status, mcp, keygen, sweep (plus the plugin commands from
``aitrados.pluginhost.cli`` when present). Exit code 0 on success, non-zero on failure with the
reason on stderr.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Any

from loguru import logger
from pydantic import ValidationError

from . import __version__
from .bus.addresses import endpoints_for
from .errors import AitradosError
from .log import setup_logging
from .run_options import OptionError, check_log_level, deep_merge, parse_set
from .settings import Settings, load_settings

Handler = Callable[[argparse.Namespace, Settings], int]


def _json_default(o: Any) -> Any:
    if isinstance(o, (datetime, date)):
        return o.isoformat()
    if isinstance(o, bytes):
        return o.hex()
    if hasattr(o, "__struct_fields__"):
        return {f: getattr(o, f) for f in o.__struct_fields__}
    return str(o)


def dumps(obj: Any, indent: int | None = 2) -> str:
    """JSON for a person at a terminal (datetimes as ISO strings, bytes as hex)."""
    return json.dumps(obj, indent=indent, default=_json_default, sort_keys=False)


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _client_endpoints(args: argparse.Namespace, s: Settings):
    return endpoints_for(s.bus, getattr(args, "transport", "auto") or "auto")


# ---------------------------------------------------------------- commands
def run_overrides(args: argparse.Namespace, base: Settings) -> dict[str, Any]:
    """The settings ``aitrados run``'s flags change (on top of *base*); checks every value first.

    A finite backtest (strategies named, no ``--serve``) gets its own bus instance name and
    any free tcp ports, so several can run at once; ``--serve`` keeps the configured ones.
    """
    from .pluginhost.cli import plugin_names
    from .run_options import check_report_dir, data_file, parse_speed, parse_when

    md: dict[str, Any] = {}
    out: dict[str, Any] = {}
    names = plugin_names(args.plugins)
    stray = [n for a in args.isolate or [] for n in plugin_names(a) if n not in names]
    if stray:
        one = len(stray) == 1
        raise OptionError(f"--isolate {', '.join(stray)}: not among --plugins ({args.plugins or 'none'}); add "
                          f"{'it' if one else 'them'} to --plugins to run {'it' if one else 'them'} isolated")
    if args.provider:
        md["provider"] = args.provider
    if args.speed is not None:
        times, bps = parse_speed(args.speed)
        args.bars_per_second = bps
        if times is not None:
            md["replay_speed"] = times
    if args.symbol and args.data and len(args.data) > 1:
        raise OptionError("--symbol names the symbol of one --data file; name several files "
                          "ASSET_COUNTRY_SYMBOL_INTERVAL.csv instead (e.g. STOCK_US_GOOG_DAY.csv)")
    symbols: list[str] = []
    if args.data:
        entries = [data_file(f, args.symbol) for f in args.data]
        symbols = list(dict.fromkeys(e["full_symbol"] for e in entries))
        md["replay_bar_files"] = [f if isinstance(f, str) else f.model_dump() for f in base.marketdata.replay_bar_files]
        md["replay_bar_files"] += entries
        md["replay_bundled"] = bool(args.bundled)
        md["replay_symbols"] = []
    elif args.symbol:
        from .marketdata.models import normalize_full_symbol

        try:
            symbols = [normalize_full_symbol(args.symbol)]
        except ValueError as exc:
            raise OptionError(f"--symbol {args.symbol!r}: {exc}") from None
    if args.start:
        md["replay_start"] = parse_when(args.start, "--from")
    if args.end:
        md["replay_end"] = parse_when(args.end, "--to", end=True)
    if "replay_start" in md and "replay_end" in md and md["replay_end"] <= md["replay_start"]:
        raise OptionError(f"--to {args.end} is not after --from {args.start}")
    if len(symbols) == 1 and names:  # the strategies trade the one symbol given
        plugins = {}
        for n in _plugins_with_setting(base, names, "full_symbol"):
            if "full_symbol" not in (base.plugins.get(n) or {}):
                plugins[n] = {"full_symbol": symbols[0]}
        if plugins:
            out["plugins"] = plugins
    if md:
        out["marketdata"] = md
    if args.report_dir or names:  # last: the folder is created only when every other value is good
        out["trading"] = {"report_dir": check_report_dir(args.report_dir or base.trading.report_dir)}
    if names and not args.serve:
        out["bus"] = {"name": f"{base.bus.name}-run{os.getpid()}", "rpc_frontend_port": 0, "rpc_backend_port": 0,
                      "sub_port": 0, "pub_port": 0}
    return out


def _plugins_with_setting(settings: Settings, names: list[str], field: str) -> list[str]:
    """Which of plugins *names* have a setting called *field* (they are imported, quietly)."""
    from .pluginhost.cli import quiet_plugin_logs
    from .pluginhost.registry import PluginRegistry

    reg = PluginRegistry(settings, strict=False)
    try:
        with quiet_plugin_logs():
            reg.load(reg.select(names))
    except Exception:  # unknown or broken plugins are reported by the run itself
        return []
    return [n for n in names if field in getattr(reg.settings_models.get(n), "model_fields", {})]


def cmd_run(args: argparse.Namespace, s: Settings) -> int:
    """Start the middleware with its plugins and market data; a replay ends with a report.

    Plugins named with ``--plugins`` must load (else the run stops before starting) and must
    leave at least one strategy, unless ``--serve``. Exit status: 0 done, 1 a failure or a
    strategy callback error (unless ``trading.allow_strategy_errors``), 130 interrupted.
    """
    from .pluginhost.cli import host_from_args, plugin_names
    from .runtime import Runtime

    names = plugin_names(args.plugins) or None
    rt = Runtime(s, host=host_from_args(args, s), plugins=names, exit_at_end=not args.serve,
                 require_strategy=bool(names) and not args.serve,
                 bars_per_second=getattr(args, "bars_per_second", None), dashboard=dashboard_port(args))
    rt.dashboard_any_port = args.dashboard is None  # only the implied default port may move
    if getattr(args, "own_process", False):
        gc.freeze()  # the runtime's modules, imported just now, live until the exit too (see main)
    rt.mw.install_signal_handlers()
    rt.start()
    return rt.wait()


def dashboard_port(args: argparse.Namespace) -> int | None:
    """The dashboard port ``run`` asks for: ``--dashboard [PORT]``, the default with ``--serve``, None when off."""
    from .dashboard.launch import DEFAULT_PORT

    if args.no_dashboard:
        return None
    if args.dashboard is not None:
        return int(args.dashboard)
    return DEFAULT_PORT if args.serve else None


def cmd_config(args: argparse.Namespace, s: Settings) -> int:
    """Print the effective settings with secrets masked (JSON, or ``--toml`` to paste into
    aitrados.toml; ``--origin`` says where each value came from)."""
    if args.toml or args.origin:
        from .config_toml import settings_toml

        print(settings_toml(s, show_origin=args.origin, command_line=getattr(args, "overrides", None)), end="")
        return 0
    print(dumps(s.masked()))
    return 0


def cmd_call(args: argparse.Namespace, s: Settings) -> int:
    """Call SERVICE METHOD with key=value parameters and print the result as JSON.

    Sends the operator token read from the middleware's ipc folder (when this user can read it),
    so operator methods such as ``trading trip`` work from the command line.
    """
    from .bus import RPCClient
    from .bus.tokens import read_token

    params: dict[str, Any] = {}
    for kv in args.params:
        if "=" not in kv:
            print(f"error: parameter {kv!r} is not key=value", file=sys.stderr)
            return 2
        k, v = kv.split("=", 1)
        params[k] = _parse_value(v)
    token = read_token(s.bus, "operator")
    with RPCClient(_client_endpoints(args, s).rpc_frontend, bus=s.bus, timeout=args.timeout, token=token) as c:
        result = c.call(args.service, args.method, **params)
    print(dumps(result))
    return 0


def cmd_tail(args: argparse.Namespace, s: Settings) -> int:
    """Print messages on topics starting with PREFIX as they come."""
    from .bus import Subscriber

    _ping(args, s, args.timeout)  # a middleware must be there: else say so, not wait in silence
    n = 0
    deadline = time.monotonic() + args.seconds if args.seconds else None
    with Subscriber(_client_endpoints(args, s).subscribe, [args.prefix], bus=s.bus) as sub:
        try:
            while args.count is None or n < args.count:
                wait = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
                if wait <= 0:
                    break
                m = sub.recv(timeout=wait)
                if m is None:
                    continue
                print(f"{m.topic} #{m.seq} {dumps(m.data, indent=None)}", flush=True)
                n += 1
        except KeyboardInterrupt:
            pass
        st = sub.stats
        if st.missed or st.malformed:
            print(f"# {st.missed} message(s) missed in {st.gaps} gap(s), {st.malformed} malformed", file=sys.stderr)
    return 0


class NoMiddlewareError(AitradosError, RuntimeError):
    """No middleware answered at the address the command uses."""


def _ping(args: argparse.Namespace, s: Settings, timeout: float) -> dict[str, Any]:
    """``middleware ping`` with *timeout*; raises :class:`NoMiddlewareError` saying where it looked."""
    from .bus import RPCClient
    from .bus.errors import BusError

    address = _client_endpoints(args, s).rpc_frontend
    try:
        with RPCClient(address, bus=s.bus, timeout=timeout) as c:
            return c.call("middleware", "ping")
    except (BusError, TimeoutError) as exc:
        raise NoMiddlewareError(f"no middleware: {exc}") from None


def wait_ready(args: argparse.Namespace, s: Settings, services: list[str], timeout: float) -> list[str]:
    """Wait until the middleware lists every service of *services* (default: ``runtime``, which a
    run registers once all of its services and plugins are up); returns the missing ones at the
    deadline (empty = ready)."""
    from .bus import RPCClient
    from .bus.errors import BusError

    want = set(services or ["runtime"])
    deadline = time.monotonic() + timeout
    missing = sorted(want)
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return missing
        try:
            with RPCClient(_client_endpoints(args, s).rpc_frontend, bus=s.bus, timeout=min(1.0, left)) as c:
                missing = sorted(want - set(c.call("middleware", "services")))
        except (BusError, TimeoutError):
            pass  # not up yet
        if not missing:
            return []
        time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))


def cmd_status(args: argparse.Namespace, s: Settings) -> int:
    """Print services, workers, topics and rates of a running middleware.

    ``--wait [SERVICE ...]`` waits (up to ``--timeout`` seconds) until the run is ready — every
    named service registered, by default the ``runtime`` service a run registers once all of its
    services and plugins are up — and exits 0, or 1 at the deadline.
    """
    from .bus import RPCClient

    if args.wait is not None:
        timeout = args.timeout if args.timeout is not None else 60.0
        missing = wait_ready(args, s, args.wait, timeout)
        if missing:
            print(f"error: not ready within {timeout:g}s: service(s) {', '.join(missing)} not registered "
                  f"at {_client_endpoints(args, s).rpc_frontend}", file=sys.stderr)
            return 1
        print("ready")
        return 0
    args.timeout = args.timeout if args.timeout is not None else 5.0
    _ping(args, s, args.timeout)
    with RPCClient(_client_endpoints(args, s).rpc_frontend, bus=s.bus, timeout=args.timeout) as c:
        ping = c.call("middleware", "ping")
        services = c.call("middleware", "services")
        topics = c.call("middleware", "topics")
        stats = c.call("middleware", "stats")
    if args.json:
        print(dumps({"ping": ping, "services": services, "topics": topics, "stats": stats}))
        return 0
    print(f"middleware {ping['version']} (protocol {ping['protocol']}) pid {ping['pid']} on {ping['host']}, "
          f"up {stats['rpc']['uptime']:.0f}s")
    print(f"\nservices ({len(services)}):")
    for name, info in sorted(services.items()):
        print(f"  {name:<24} requests {info['requests']:>9}  workers {len(info['workers'])}")
        for w in info["workers"]:
            print(f"    - {w['id']} pid {w.get('pid')} host {w.get('host')} in flight {w['inflight']} served {w['served']}"
                  f" restarts {w.get('restarts', 0)}")
    p = stats.get("pubsub") or {}
    scope = ("every topic published" if p.get("count_all_topics", True)
             else "only topics someone subscribes to (bus.count_all_topics is off)")
    print(f"\ntopics ({len(topics)}; {scope}; messages = published since each publisher started, "
          "rate = per second over the last second):")
    if p.get("topics_untracked"):
        print(f"  ({p['topics_untracked']} message(s) on topics beyond the bus.topic_stats_max cap are not listed)")
    for name, t in sorted(topics.items()):
        print(f"  {name:<40} messages {t['count']:>10}  rate {t['rate']:>9.1f}/s  publishers {t['publishers']}")
    r = stats["rpc"]
    print(f"\nrpc: requests {r['requests']} replies {r['replies']} errors {r['errors']} "
          f"unknown service {r['unknown_service']} workers lost {r['workers_lost']} malformed {r['malformed']}")
    peers = r.get("peers") or {}
    print(f"rpc peers: replies dropped {peers.get('dropped', 0)} (undeliverable {r.get('undeliverable', 0)}) "
          f"cut-offs {peers.get('cut_offs', 0)} busy {r.get('busy', 0)} too many requests "
          f"{r.get('too_many_requests', 0)} refused READY {r.get('refused_ready', 0)}")
    for peer, n in (peers.get("dropped_by_peer") or {}).items():
        cut = " (cut off now)" if peer in (peers.get("cut_off_now") or []) else ""
        print(f"  - peer {peer}: {n} message(s) dropped{cut}")
    p = stats.get("pubsub") or {}
    print(f"pubsub: malformed {p.get('malformed', 0)} subscriptions {p.get('subscriptions_total', 0)}")
    return 0


def cmd_keygen(args: argparse.Namespace, s: Settings) -> int:
    """Create CURVE server and client key pairs and authorize the client (refuses to overwrite without --force)."""
    from .bus.security import SecurityError, make_keys

    try:
        files = make_keys(args.dir, force=args.force)
    except SecurityError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for k, p in files.items():
        print(f"{k:<14} {p}")
    d = files["server_secret"].parent
    print("\nmiddleware: AITRADOS_BUS__CURVE_SECRET_KEY_FILE=" + str(d / "server.key_secret"))
    print("clients:    AITRADOS_BUS__CURVE_PUBLIC_KEY_FILE=" + str(d / "server.key")
          + " AITRADOS_BUS__CURVE_CLIENT_SECRET_KEY_FILE=" + str(d / "client.key_secret"))
    print(f"allowed clients: the public keys in {files['authorized_dir']} (add one client.key per client)")
    return 0


# ---------------------------------------------------------------- parser
def build_parser(argv: Sequence[str] = ()) -> tuple[argparse.ArgumentParser, dict[str, Handler]]:
    """The argument parser for the command line *argv* and the handler of each subcommand.

    Commands that plugins contribute are added only when *argv* names a command that is not
    built in (so the built-in ones never import the plugins): pass the command line you will
    parse. Nothing here reads ``sys.argv``.
    """
    p = argparse.ArgumentParser(prog="aitrados", description="Plugin-based strategy host and trading middleware.")
    p.add_argument("--version", action="version", version=f"aitrados {__version__}")
    p.add_argument("--log-level", help="DEBUG, INFO, WARNING... (setting log_level)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    handlers: dict[str, Handler] = {}

    def add(name: str, fn: Handler, help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=fn.__doc__)
        sp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any setting, e.g. trading.broker.initial_cash=10000 or sma_cross.fast=10 "
                             "(plugin settings by plugin name; values are JSON when they parse); repeatable")
        handlers[name] = fn
        return sp

    run = add("run", cmd_run, "run the middleware, plugins and market data (a replay ends with a report)")
    from .dashboard.launch import DEFAULT_PORT as DEFAULT_DASHBOARD_PORT
    from .pluginhost.cli import add_run_arguments

    add_run_arguments(run)
    run.add_argument("--provider", choices=["auto", "replay", "cloud"],
                     help="market data: local replay server or AiTrados cloud (default auto: cloud with a key)")
    run.add_argument("--speed", help="replay speed: 0 = as fast as possible (default), N or Nx = N times real time, "
                                     "N/s = about N bars per second")
    run.add_argument("--report-dir", help="folder for the end-of-replay reports, one run-<UTC time> folder per run "
                                          "and a latest link (setting trading.report_dir)")
    run.add_argument("--serve", action="store_true", help="keep serving after the replay ends (until Ctrl-C), "
                                                          "on the configured bus name and tcp ports")
    run.add_argument("--data", action="append", metavar="FILE",
                     help="replay your own CSV/Parquet bar file (repeat for several); turns the bundled data off")
    run.add_argument("--symbol", help="ASSET:COUNTRY:SYMBOL of the --data file and of the strategies "
                                      "(default: from the file name, GOOG.csv = STOCK:US:GOOG)")
    run.add_argument("--bundled", action="store_true", help="with --data: keep the bundled S&P 500 / NASDAQ data too")
    run.add_argument("--from", dest="start", metavar="DATE", help="start the replay at DATE (YYYY-MM-DD, UTC)")
    run.add_argument("--to", dest="end", metavar="DATE", help="end the replay after DATE (YYYY-MM-DD, UTC)")
    run.add_argument("--dashboard", type=int, nargs="?", const=DEFAULT_DASHBOARD_PORT, metavar="PORT",
                     help="serve the live dashboard and /metrics on 127.0.0.1:PORT (default 8780; on with --serve)")
    run.add_argument("--no-dashboard", action="store_true", help="no dashboard, even with --serve")
    cfg = add("config", cmd_config, "print the effective settings (secrets masked)")
    cfg.add_argument("--toml", action="store_true", help="as TOML to paste into aitrados.toml")
    cfg.add_argument("--origin", action="store_true",
                     help="TOML with where each value came from (command line, environment, .env, file, default)")
    for name, fn, help_ in (("call", cmd_call, "call a service method"), ("status", cmd_status, "show services, topics, rates"),
                            ("tail", cmd_tail, "print messages on a topic prefix")):
        sp = add(name, fn, help_)
        sp.add_argument("--transport", choices=["auto", "ipc", "tcp"], default="auto",
                        help="how to reach the middleware (default: ipc on this host)")
        if name == "call":
            sp.add_argument("service")
            sp.add_argument("method")
            sp.add_argument("params", nargs="*", metavar="key=value", help="values are JSON when they parse, else strings")
        if name in ("call", "tail"):
            sp.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the middleware (default 5)")
        if name == "status":
            sp.add_argument("--timeout", type=float, help="seconds (default 5; with --wait 60)")
            sp.add_argument("--json", action="store_true", help="machine-readable output")
            sp.add_argument("--wait", nargs="*", metavar="SERVICE",
                            help="wait until the run is ready (or these services are registered): exit 0, "
                                 "non-zero at the timeout")
        if name == "tail":
            sp.add_argument("prefix", nargs="?", default="", help="topic prefix, e.g. ohlc. (default: everything)")
            sp.add_argument("--count", type=int, help="stop after this many messages")
            sp.add_argument("--seconds", type=float, help="stop after this many seconds")
    from .mcp.cli import add_arguments as add_mcp_arguments, cmd_mcp

    add_mcp_arguments(add("mcp", cmd_mcp, "serve the financial MCP tools to LLM agents (stdio, or --http)"))
    kg = add("keygen", cmd_keygen, "make CURVE keys for binding beyond loopback")
    kg.add_argument("--dir", default="keys", help="folder for the key files (default ./keys)")
    kg.add_argument("--force", action="store_true", help="replace existing key files (clients holding the old keys are locked out)")
    for module in COMMAND_MODULES:
        mod = __import__(module, fromlist=["add_commands"])
        mod.add_commands(sub, handlers, argv=argv)
    return p, handlers


#: Modules that contribute subcommands through ``add_commands(subparsers, handlers, argv=...)``.
COMMAND_MODULES: list[str] = ["aitrados.sweep_cli", "aitrados.pluginhost.cli"]


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for e in exc.errors():
        loc = ".".join(str(x) for x in e.get("loc", ())) or "(root)"
        parts.append(f"{loc}: {e.get('msg')} (got {e.get('input')!r})" if "input" in e and not isinstance(
            e.get("input"), dict) else f"{loc}: {e.get('msg')}")
    return "; ".join(parts)


def build_settings(args: argparse.Namespace) -> Settings:
    """The effective settings for *args*: files and environment, then ``--set``, then run flags."""
    sets = getattr(args, "set", None) or []
    top = set(Settings.model_fields)
    plugin_names: set[str] = set()
    if any(item.split("=", 1)[0].split(".")[0].strip() not in top for item in sets):
        from .pluginhost.registry import installed_plugins

        plugin_names = set(installed_plugins()[0])
    overrides = parse_set(sets, top, plugin_names)
    if args.log_level:
        overrides["log_level"] = check_log_level(args.log_level)
    settings = load_settings(**overrides)
    args.overrides = overrides
    if args.command == "run":
        settings = load_settings(**deep_merge(overrides, run_overrides(args, settings)))
    check_log_level(settings.log_level)
    return settings


def main(argv: Sequence[str] | None = None, *, own_process: bool = False) -> int:
    """Entry point of the ``aitrados`` command; *argv* defaults to ``sys.argv[1:]``. Returns the exit code.

    *own_process* (the console command, see :func:`console_main`): the command is the whole process,
    so the objects its imports and settings made, which live until the exit, are frozen out of the
    garbage collector before the command runs (its full collections then scan only what the
    command makes). In-process callers leave it False and the collector as it was.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, handlers = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        settings = build_settings(args)
    except OptionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        print(f"error: invalid settings: {_validation_message(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:
        print(f"error: invalid settings: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level, [settings.secret_key.get_secret_value() if settings.secret_key else None])
    args.own_process = own_process
    if own_process:
        gc.freeze()
    try:
        code = handlers[args.command](args, settings)
        sys.stdout.flush()  # inside the try: a reader that left (`| head`) is not an error
        return code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `aitrados status | head`: the reader left; say nothing more
        _silence_stdout()
        return 0
    except Exception as exc:
        logger.debug("command failed", exc_info=exc)
        print(f"error: {exc}", file=sys.stderr)
        return 1


def console_main() -> int:
    """The ``aitrados`` command itself (console script and ``python -m aitrados``): :func:`main` on
    ``sys.argv``, then a quick exit. Returns the exit code for ``sys.exit``.

    The process ends right after: ``gc.freeze()`` puts every object out of the collector's reach,
    so the interpreter's exit skips its full garbage collections over the run's objects (about
    130,000 after a backtest: half a second of a 2-second run). The command has closed its files
    and sockets; atexit handlers still run and the standard streams are still flushed. What the
    exit skips is finalizers of garbage cycles, which Python never promises to run at exit; their
    memory goes back with the process's. In-process callers of :func:`main` keep the collector as it was.
    """
    code = main(own_process=True)
    gc.freeze()
    return code


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail on a closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(console_main())
