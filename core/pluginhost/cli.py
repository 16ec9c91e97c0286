"""The plugin subcommands of ``aitrados``: ``plugins``, ``new-plugin``, ``worker`` and the
commands plugins contribute through ``register_commands``.

``aitrados.cli.build_parser`` calls ``add_commands(subparsers, handlers, argv=...)``; each handler takes
``(args, settings)`` and returns the exit code. ``python -m aitrados.pluginhost.cli ...`` runs the
same commands on their own.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from loguru import logger

Handler = Callable[[argparse.Namespace, Any], int]

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,60}$")


# ---------------------------------------------------------------- aitrados plugins
def plugin_report(settings: Any, names: list[str] | None = None) -> list[dict[str, Any]]:
    """Load every installed plugin (or *names*), never strictly; returns one dict per plugin."""
    from .registry import PluginRegistry

    reg = PluginRegistry(settings, strict=False)
    iso = set(getattr(getattr(settings, "plugin_host", None), "isolate", []) or [])
    chosen = reg.select(names) if names else sorted(reg.installed)
    reg.load(chosen)
    out = []
    for n in chosen:
        d = reg.infos[n].to_dict()
        d["isolated"] = n in iso
        d["strategies"] = [s for s, p in reg.strategy_plugins.items() if p == n]
        out.append(d)
    return out


def cmd_plugins(args: argparse.Namespace, settings: Any) -> int:
    """List installed plugins: name, distribution and version, hooks, loaded or failed and why."""
    from .registry import ENTRY_POINT_GROUP

    names = [n for n in (args.plugins or "").split(",") if n.strip()] or None
    rows = plugin_report(settings, names)
    if args.json:
        print(json.dumps({"group": ENTRY_POINT_GROUP, "plugins": rows}, indent=2))
        return 0
    print(f"plugins in entry-point group {ENTRY_POINT_GROUP!r}: {len(rows)}")
    if not rows:
        print("  none installed: `aitrados new-plugin NAME` makes one, `pip install -e NAME` installs it")
    for r in rows:
        dist = f"{r['distribution']} {r['version']}" if r["distribution"] else r["entry_point"]
        state = r["status"] if r["status"] != "failed" else f"FAILED: {r['reason']}"
        iso = " (isolated)" if r["isolated"] else ""
        print(f"\n  {r['name']}{iso}  [{dist}]  {state}")
        print(f"    entry point: {r['entry_point']}")
        if r["hooks"]:
            print(f"    hooks: {', '.join(r['hooks'])}")
        if r["strategies"]:
            print(f"    strategies: {', '.join(r['strategies'])}")
    return 0


# ---------------------------------------------------------------- aitrados new-plugin
def template_dir() -> Path:
    """The cookiecutter template folder (``AITRADOS_PLUGIN_TEMPLATE`` overrides).

    An installed wheel carries it as ``aitrados/plugin_template``; an editable install of a
    checkout finds ``plugin_template/`` beside ``core/``.
    """
    env = os.environ.get("AITRADOS_PLUGIN_TEMPLATE")
    candidates = [Path(env)] if env else []
    package = Path(__file__).resolve().parent.parent  # the `aitrados` package (core/ in a checkout)
    candidates += [package / "plugin_template", package.parent / "plugin_template"]
    for c in candidates:
        if (c / "cookiecutter.json").is_file():
            return c
    raise FileNotFoundError("the plugin template was not found (looked in " + ", ".join(map(str, candidates))
                            + "); set AITRADOS_PLUGIN_TEMPLATE to the plugin_template folder of an aitrados checkout")


def template_context(name: str, **opts: Any) -> dict[str, str]:
    """The cookiecutter context for plugin *name* (every prompt answered; *opts* override)."""
    if not _NAME.match(name):
        raise ValueError(f"plugin name {name!r}: use lower-case letters, digits and '_', starting with a letter "
                         "(it becomes the entry-point name and the settings key plugins.<name>)")
    ctx = {
        "plugin_name": name,
        "project_name": "aitrados-" + name.replace("_", "-"),
        "package_name": "aitrados_" + name,
        "description": f"An aitrados plugin: {name}",
        "author": "Your Name",
        "author_email": "you@example.com",
        "version": "0.1.0",
        "full_symbol": "STOCK:US:SPX",
        "interval": "DAY",
    }
    for k, v in opts.items():
        if v is not None:
            ctx[k] = str(v)
    if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", ctx["package_name"]):
        raise ValueError(f"--package {ctx['package_name']!r} is not a valid Python module name")
    return ctx


def render_plugin(name: str, output_dir: str | Path = ".", overwrite: bool = False, **opts: Any) -> Path:
    """Render the template for plugin *name* into *output_dir*; returns the project folder.

    Needs cookiecutter, which comes with the ``template`` extra (``pip install 'aitrados[template]'``).
    """
    try:
        from cookiecutter.main import cookiecutter
    except ImportError as exc:
        raise RuntimeError("`aitrados new-plugin` needs cookiecutter, which the runtime does not install: "
                           "pip install 'aitrados[template]'") from exc

    ctx = template_context(name, **opts)
    target = Path(output_dir) / ctx["project_name"]
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; choose another --output-dir or pass --force to overwrite")
    out = cookiecutter(str(template_dir()), no_input=True, extra_context=ctx, output_dir=str(output_dir),
                       overwrite_if_exists=overwrite)
    return Path(out)


_TEMPLATE_FLAGS = (("project_name", "--dist", "distribution name (default aitrados-NAME)"),
                   ("package_name", "--package", "import package (default aitrados_NAME)"),
                   ("description", "--description", "one-line description"),
                   ("author", "--author", "author name"),
                   ("author_email", "--email", "author e-mail"),
                   ("version", "--plugin-version", "first version (default 0.1.0)"),
                   ("full_symbol", "--symbol", "symbol the example strategy trades (default STOCK:US:SPX, bundled)"),
                   ("interval", "--interval", "interval of the example strategy (default DAY)"))


def cmd_new_plugin(args: argparse.Namespace, settings: Any) -> int:
    """Create a pip-installable plugin project from the template (no questions asked)."""
    opts = {key: getattr(args, key) for key, _, _ in _TEMPLATE_FLAGS}
    out = render_plugin(args.name, args.output_dir, overwrite=args.force, **opts)
    print(f"created {out}")
    print(f"next: pip install -e {out} && aitrados plugins && aitrados run --plugins {args.name}")
    return 0


# ---------------------------------------------------------------- aitrados worker
def cmd_worker(args: argparse.Namespace, settings: Any) -> int:
    """Run plugins in this process, connected to a middleware (here or on another machine)."""
    from .worker import run_worker

    return run_worker(args, settings)


# ---------------------------------------------------------------- aitrados run (flags for the lead's command)
def plugin_names(text: str | None) -> list[str]:
    """The plugin names of a comma-separated option value (``--plugins a,b``), blanks dropped."""
    return [n.strip() for n in (text or "").split(",") if n.strip()]


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--plugins``, ``--strict`` and ``--isolate`` to the ``run`` command's parser."""
    parser.add_argument("--plugins", help="comma-separated plugins to load; each must load, else the run stops "
                                          "(default: setting plugin_host.default, which loads none; "
                                          "`aitrados plugins` lists what is installed)")
    parser.add_argument("--strict", action="store_true",
                        help="any plugin failure stops the start (setting plugin_host.strict)")
    parser.add_argument("--isolate", action="append", default=[], metavar="NAME",
                        help="run plugin NAME in its own supervised process (repeat or comma-separate; "
                             "setting plugin_host.isolate)")


def host_from_args(args: argparse.Namespace, settings: Any) -> Any:
    """The ``PluginHost`` the ``run`` flags ask for (call ``.start(middleware)`` and ``.stop()``).

    Plugins named with ``--plugins`` must load (strict), as must every plugin with ``--strict``;
    otherwise the ``plugin_host.strict`` setting decides.
    """
    from .host import PluginHost

    names = plugin_names(getattr(args, "plugins", None)) or None
    isolate = [n for a in getattr(args, "isolate", None) or [] for n in plugin_names(a)]
    strict = True if (getattr(args, "strict", False) or names) else None
    return PluginHost(settings, names=names, strict=strict, isolate=isolate)


# ---------------------------------------------------------------- registration
def _plugin_commands() -> dict[str, tuple[str, dict[str, Any]]]:
    """Commands contributed by installed plugins (plugins that fail are skipped: see `aitrados plugins`)."""
    from .registry import PluginRegistry

    try:
        reg = PluginRegistry(None, strict=False)
        with quiet_plugin_logs():
            reg.load(sorted(reg.installed))
        return reg.commands
    except Exception as exc:  # a broken plugin must never break the command line
        logger.debug("plugin commands unavailable: {}", exc)
        return {}


class quiet_plugin_logs:
    """Silence loguru while plugins are imported for the command list."""

    def __enter__(self) -> None:
        logger.disable("aitrados")

    def __exit__(self, *exc: object) -> None:
        logger.enable("aitrados")


def wants_plugin_command(subparsers: Any, argv: Sequence[str]) -> bool:
    """True when the command *argv* names is not (yet) one of *subparsers*' commands."""
    for a in argv:
        if not a.startswith("-"):
            return a not in subparsers.choices
    return False


def add_commands(subparsers: Any, handlers: dict[str, Handler],
                 plugin_commands: dict[str, tuple[str, dict[str, Any]]] | None = None,
                 argv: Sequence[str] = ()) -> None:
    """Add ``plugins``, ``new-plugin``, ``worker`` and plugin-contributed commands.

    :param subparsers: the ``add_subparsers()`` object of the ``aitrados`` parser
    :param handlers: command name -> handler map, filled in here
    :param plugin_commands: contributed commands (default: discovered from installed plugins,
        only when *argv* names a command that is not built in, so other commands stay fast)
    :param argv: the command line being parsed (its arguments after the program name)
    """
    from .worker import add_worker_arguments

    p = subparsers.add_parser("plugins", help="list installed plugins and whether they load",
                              description=cmd_plugins.__doc__)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--plugins", help="only these (comma-separated); default: every installed plugin")
    handlers["plugins"] = cmd_plugins

    n = subparsers.add_parser("new-plugin", help="create a plugin project from the template",
                              description=cmd_new_plugin.__doc__)
    n.add_argument("name", help="plugin (entry-point) name: lower-case letters, digits, '_'")
    n.add_argument("--output-dir", "-o", default=".", help="where to create the project folder (default .)")
    n.add_argument("--force", action="store_true", help="overwrite an existing project folder")
    for key, flag, help_ in _TEMPLATE_FLAGS:
        n.add_argument(flag, dest=key, help=help_)
    handlers["new-plugin"] = cmd_new_plugin

    w = subparsers.add_parser("worker", help="run plugins in this process, connected to a middleware",
                              description=cmd_worker.__doc__)
    add_worker_arguments(w)
    handlers["worker"] = cmd_worker

    if plugin_commands is None:
        plugin_commands = _plugin_commands() if wants_plugin_command(subparsers, argv) else {}
    for name, (plugin, spec) in plugin_commands.items():
        if name in subparsers.choices:
            logger.warning("plugin {!r} command {!r} clashes with a built-in command; skipped", plugin, name)
            continue
        sp = subparsers.add_parser(name, help=f"{spec['help']} (plugin {plugin})".strip(),
                                   description=spec["help"] or None)
        if spec["configure"] is not None:
            spec["configure"](sp)
        handlers[name] = _plugin_handler(plugin, name, spec["handler"])


def _plugin_handler(plugin: str, name: str, fn: Callable[..., Any]) -> Handler:
    def run(args: argparse.Namespace, settings: Any) -> int:
        r = fn(args, settings)
        return int(r or 0)

    run.__doc__ = f"command {name!r} of plugin {plugin!r}"
    return run


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m aitrados.pluginhost.cli COMMAND ...``: the plugin commands without the rest of the CLI."""
    from ..log import setup_logging
    from ..settings import load_settings

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="aitrados")
    sub = parser.add_subparsers(dest="command", required=True)
    handlers: dict[str, Handler] = {}
    add_commands(sub, handlers, argv=argv)
    args = parser.parse_args(argv)
    settings = load_settings()
    setup_logging(settings.log_level)
    try:
        return handlers[args.command](args, settings)
    except Exception as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
