"""The plugin host package: no import cycle, one record per contribution hook, typed hooks, a CLI
that parses the argv it is given."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from fixtures.plugin_env import ALL, install

from aitrados.pluginhost import hookspecs
from aitrados.pluginhost.contributions import BY_HOOK, CONTRIBUTIONS, SETTINGS
from aitrados.pluginhost.registry import PluginRegistry, all_hook_names

pytestmark = pytest.mark.timeout(120)

PACKAGE = Path(hookspecs.__file__).resolve().parent


def _internal_imports(path: Path) -> set[str]:
    """Modules of the package that *path* imports when it runs, at the top or inside functions
    (``if TYPE_CHECKING:`` imports are for type checkers only and never run)."""
    out: set[str] = set()
    todo: list[ast.AST] = [ast.parse(path.read_text())]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            todo.extend(node.orelse)
            continue
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            out.update([node.module.split(".")[0]] if node.module else [a.name for a in node.names])
        todo.extend(ast.iter_child_nodes(node))
    return out


def test_the_package_has_no_import_cycle_even_through_lazy_imports() -> None:
    graph = {p.stem: _internal_imports(p) for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert {"host", "isolation", "worker", "registry", "contributions"} <= set(graph)
    assert "host" not in graph["isolation"] and "worker" not in graph["isolation"]

    def cycle_from(start: str) -> list[str] | None:
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    return [*path, nxt]
                if nxt not in path:
                    stack.append((nxt, [*path, nxt]))
        return None

    cycles = [c for m in graph if (c := cycle_from(m))]
    assert not cycles, f"import cycles in aitrados.pluginhost: {cycles}"


def _loaded_after(statement: str) -> list[str]:
    code = f"import sys; {statement}; import json; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_the_settings_model_and_the_supervisor_import_alone() -> None:
    # aitrados.settings imports the plugin host's settings: that must not pull in the bus or the host
    loaded = _loaded_after("import aitrados.pluginhost.settings")
    assert "zmq" not in loaded
    assert [m for m in loaded if m.startswith("aitrados.pluginhost.")] == ["aitrados.pluginhost.settings"]
    loaded = _loaded_after("import aitrados.pluginhost.isolation")
    assert "aitrados.pluginhost.host" not in loaded and "aitrados.pluginhost.worker" not in loaded


def test_every_contribution_hook_is_one_record_of_the_table() -> None:
    register_hooks = {h for h in all_hook_names() if h.startswith("register_")}
    # the MCP server, not the plugin host, collects register_mcp_tools (docs/mcp.md)
    assert register_hooks - {"register_mcp_tools"} == set(BY_HOOK)
    assert CONTRIBUTIONS[0] is SETTINGS, "settings first: the other register_* hooks read them"
    reg = PluginRegistry(None, strict=False)
    for c in CONTRIBUTIONS:
        assert c.what and c.hook.startswith("register_")
        if c.view is None:
            continue
        assert isinstance(getattr(PluginRegistry, c.view), property), f"{c.hook}: no PluginRegistry.{c.view}"
        assert c.hook in reg.contributed and getattr(reg, c.view) == {}


def _resolved_hints() -> dict[str, dict[str, typing.Any]]:
    """Every hook's annotations resolved, with the TYPE_CHECKING imports executed."""
    source = Path(hookspecs.__file__).read_text().replace("if TYPE_CHECKING:", "if True:")
    ns: dict[str, typing.Any] = {"__name__": "aitrados.pluginhost._hookspecs_typed",
                                 "__package__": "aitrados.pluginhost"}
    exec(compile(source, hookspecs.__file__, "exec"), ns)  # noqa: S102 - our own module, for its annotations
    return {name: typing.get_type_hints(ns[name], globalns=ns) for name in all_hook_names()}


def test_every_hook_parameter_is_typed() -> None:
    hints = _resolved_hints()
    bare = [f"{hook}({arg})" for hook, h in hints.items() for arg, t in h.items()
            if arg != "return" and t is typing.Any]
    assert not bare, f"hook parameters typed Any: {bare}"
    from aitrados.pluginhost.host import HostContext
    from aitrados.trading.strategy import Strategy

    assert hints["on_startup"]["host"] is HostContext
    assert Strategy in typing.get_args(hints["register_strategies"]["register"])[0]


@pytest.fixture
def configured_installed(tmp_path, monkeypatch):
    return install(tmp_path, monkeypatch, {"configured": ALL["configured"]})


def test_cli_main_finds_a_plugin_command_in_its_argv_not_in_sys_argv(configured_installed, monkeypatch,
                                                                      capsys) -> None:
    from aitrados import cli

    monkeypatch.setattr(sys, "argv", ["aitrados", "status"])  # what the process was started with says else
    assert cli.main(["double", "21"]) == 0
    assert capsys.readouterr().out.strip() == "42"
    # a built-in command line looks no plugin up: the plugin's command is not there
    monkeypatch.setattr(sys, "argv", ["aitrados", "double", "21"])
    _, handlers = cli.build_parser(["status"])
    assert "double" not in handlers and "status" in handlers
    _, handlers = cli.build_parser(["double", "21"])
    assert "double" in handlers
