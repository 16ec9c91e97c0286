"""The ``aitrados`` command line: run the middleware and talk to a running one.

Subcommands: run, config, call, tail, status, keygen (plus the plugin commands from
``aitrados.plugin_cli`` when present). Exit code 0 on success, non-zero on failure with the
reason on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Any

from loguru import logger

from . import __version__
from .bus.addresses import endpoints_for
from .log import setup_logging
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
def cmd_run(args: argparse.Namespace, s: Settings) -> int:
    """Start the middleware with its plugins and market data; a replay ends with a report."""
    from .plugin_cli import _names
    from .runtime import Runtime

    if args.provider:
        s.marketdata.provider = args.provider
    if args.report_dir:
        s.trading.report_dir = args.report_dir
    if args.speed is not None:
        s.marketdata.replay_speed = args.speed
    names = _names(args.plugins) or None
    isolate = [n for a in args.isolate or [] for n in _names(a)]
    rt = Runtime(s, plugins=names, strict=True if args.strict else None, isolate=isolate,
                 exit_at_end=not args.serve, dashboard=dashboard_port(args))
    rt.dashboard_any_port = args.dashboard is None  # only the implied default port may move
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
    """Print the effective settings with secrets masked."""
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


def cmd_status(args: argparse.Namespace, s: Settings) -> int:
    """Print services, workers, topics and rates of a running middleware."""
    from .bus import RPCClient

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
    print(f"\ntopics ({len(topics)}):")
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
    print(f"pubsub: malformed {p.get('malformed', 0)} subscriptions {len(p.get('subscriptions', {}))}")
    return 0


def cmd_keygen(args: argparse.Namespace, s: Settings) -> int:
    """Create CURVE server and client key pairs."""
    from .bus.security import make_keys

    files = make_keys(args.dir)
    for k, p in files.items():
        print(f"{k:<14} {p}")
    d = files["server_secret"].parent
    print("\nmiddleware: AITRADOS_BUS__CURVE_SECRET_KEY_FILE=" + str(d / "server.key_secret"))
    print("clients:    AITRADOS_BUS__CURVE_PUBLIC_KEY_FILE=" + str(d / "server.key")
          + " AITRADOS_BUS__CURVE_CLIENT_SECRET_KEY_FILE=" + str(d / "client.key_secret"))
    return 0


# ---------------------------------------------------------------- parser
def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Handler]]:
    """The argument parser and the handler of each subcommand."""
    p = argparse.ArgumentParser(prog="aitrados", description="Plugin-based strategy host and trading middleware.")
    p.add_argument("--version", action="version", version=f"aitrados {__version__}")
    p.add_argument("--log-level", help="DEBUG, INFO, WARNING... (setting log_level)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    handlers: dict[str, Handler] = {}

    def add(name: str, fn: Handler, help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=fn.__doc__)
        handlers[name] = fn
        return sp

    run = add("run", cmd_run, "run the middleware, plugins and market data (a replay ends with a report)")
    from .dashboard.launch import DEFAULT_PORT as DEFAULT_DASHBOARD_PORT
    from .plugin_cli import add_run_arguments

    add_run_arguments(run)
    run.add_argument("--provider", choices=["auto", "replay", "cloud"],
                     help="market data: local replay server or AiTrados cloud (default auto: cloud with a key)")
    run.add_argument("--speed", type=float, help="replay speed: 0 = as fast as possible, 1 = real time, N = N times")
    run.add_argument("--report-dir", help="folder for the end-of-replay reports, one run-<UTC time> folder per run and a latest link "
                     "(setting trading.report_dir)")
    run.add_argument("--serve", action="store_true", help="keep serving after the replay ends (until Ctrl-C)")
    run.add_argument("--dashboard", type=int, nargs="?", const=DEFAULT_DASHBOARD_PORT, metavar="PORT",
                     help="serve the live dashboard and /metrics on 127.0.0.1:PORT (default 8780; on with --serve)")
    run.add_argument("--no-dashboard", action="store_true", help="no dashboard, even with --serve")
    add("config", cmd_config, "print the effective settings (secrets masked)")
    for name, fn, help_ in (("call", cmd_call, "call a service method"), ("status", cmd_status, "show services, topics, rates"),
                            ("tail", cmd_tail, "print messages on a topic prefix")):
        sp = add(name, fn, help_)
        sp.add_argument("--transport", choices=["auto", "ipc", "tcp"], default="auto",
                        help="how to reach the middleware (default: ipc on this host)")
        if name == "call":
            sp.add_argument("service")
            sp.add_argument("method")
            sp.add_argument("params", nargs="*", metavar="key=value", help="values are JSON when they parse, else strings")
        if name in ("call", "status"):
            sp.add_argument("--timeout", type=float, default=5.0, help="seconds (default 5)")
        if name == "status":
            sp.add_argument("--json", action="store_true", help="machine-readable output")
        if name == "tail":
            sp.add_argument("prefix", nargs="?", default="", help="topic prefix, e.g. ohlc. (default: everything)")
            sp.add_argument("--count", type=int, help="stop after this many messages")
            sp.add_argument("--seconds", type=float, help="stop after this many seconds")
    kg = add("keygen", cmd_keygen, "make CURVE keys for binding beyond loopback")
    kg.add_argument("--dir", default="keys", help="folder for the key files (default ./keys)")
    for module in _COMMAND_MODULES:
        mod = __import__(module, fromlist=["add_commands"])
        mod.add_commands(sub, handlers)
    return p, handlers


#: Modules that contribute subcommands through ``add_commands(subparsers, handlers)``.
_COMMAND_MODULES: list[str] = ["aitrados.plugin_cli"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``aitrados`` command; returns the exit code."""
    parser, handlers = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except Exception as exc:
        print(f"error: invalid settings: {exc}", file=sys.stderr)
        return 2
    if args.log_level:
        settings.log_level = args.log_level
    setup_logging(settings.log_level, [settings.secret_key.get_secret_value() if settings.secret_key else None])
    try:
        return handlers[args.command](args, settings)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        logger.debug("command failed", exc_info=exc)
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
