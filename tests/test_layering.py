"""The import direction of the layers (docs/architecture.md): each layer imported alone in a fresh
interpreter loads only itself, the modules the table below allows, and what those load.

A layer is imported whole (the package and every module in it) in a new ``python`` process, which
prints every ``aitrados`` module then in ``sys.modules``. Modules of other layers must be within
what the allowed entry points load when imported alone (also measured in a fresh process), so a
new import of, say, ``aitrados.trading`` from the market data fails here, while the bus adding a
module of its own does not.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(120)

#: The plugin host's package (one name, so moving it is a one-line change here).
PLUGIN_HOST = "aitrados.pluginhost"

#: Modules every layer may load: the package root (``__version__``, ``hookimpl``), the lazy-export
#: helper of the package ``__init__`` files and the root of the error classes.
BASE = {"aitrados", "aitrados.lazy", "aitrados.errors"}

#: layer -> the modules of *other* layers it may import (their own imports come with them).
#: An empty tuple: the layer imports nothing above the base.
ALLOWED: dict[str, tuple[str, ...]] = {
    "aitrados.bus": (),
    "aitrados.events": (),  # the event vocabulary; decoding imports marketdata.models inside functions
    "aitrados.signals": ("aitrados.events",),
    "aitrados.marketdata": (
        "aitrados.bus.pubsub",  # hub: the publisher of ohlc/news/event topics
        "aitrados.bus.service",  # hub, http_service: the chart, mtf and http RPC services
        "aitrados.events",  # hub: topic names and event kinds
    ),
    "aitrados.trading": (
        "aitrados.events",  # engine, broker, driver, remote: event kinds and topics
        "aitrados.marketdata.models",  # engine, broker: Bar, NewsItem, CalendarEvent
        "aitrados.bus.pubsub",  # runtime, remote: publish events, subscribe to market data
        "aitrados.bus.service",  # runtime: the trading RPC service
        "aitrados.bus.tokens",  # runtime, remote: the attach token
        "aitrados.bus.client",  # remote: the isolated runner's RPC client
        "aitrados.bus.addresses",  # remote: where the isolated runner connects
        "aitrados.bus.errors",  # remote: which RPC failures to retry
        "aitrados.bus.probe",  # remote: proving a subscription before the first step
    ),
    "aitrados.dashboard": (
        "aitrados.bus.client",  # server: status and service calls
        "aitrados.bus.errors",
        "aitrados.bus.pubsub",  # server: the live event stream
    ),
    PLUGIN_HOST: (
        "aitrados.bus.service",  # host: the `plugins` service, plugin services' workers
        "aitrados.bus.client",  # host, worker: RPC clients of plugins and isolated workers
        "aitrados.bus.pubsub",  # host: plugins' subscriptions and publishers
        "aitrados.bus.probe",  # host: proving a plugin's subscription before the replay starts
        "aitrados.bus.addresses",  # host, worker: where plugins and workers connect
        "aitrados.bus.errors",  # worker: which RPC failures end an isolated worker
        "aitrados.events",  # host: topics and callbacks plugins subscribe to
    ),
}

#: Third-party packages a layer must not load when imported alone.
FORBIDDEN_THIRD_PARTY: dict[str, tuple[str, ...]] = {
    "aitrados.bus": ("httpx", "pandas", "matplotlib"),
    "aitrados.events": ("httpx", "pandas", "zmq"),
    "aitrados.signals": ("httpx", "pandas", "zmq"),
}

#: Run in the fresh interpreter: argv = ["whole" | "alone", module, ...].
_PROBE = """
import importlib, json, pkgutil, sys
for name in sys.argv[2:]:
    module = importlib.import_module(name)
    if sys.argv[1] == "whole":
        for info in pkgutil.iter_modules(getattr(module, "__path__", [])):
            importlib.import_module(name + "." + info.name)
print(json.dumps(sorted(sys.modules)))
"""


def loaded_by(*modules: str, whole: bool = True) -> set[str]:
    """Every module in ``sys.modules`` after a fresh interpreter imported *modules* (with *whole*,
    every module of each package too); the environment's ``AITRADOS_*`` variables are dropped."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AITRADOS_")}
    out = subprocess.run([sys.executable, "-c", _PROBE, "whole" if whole else "alone", *modules],
                         capture_output=True, text=True, timeout=90, env=env)
    assert out.returncode == 0, f"importing {modules} failed:\n{out.stderr[-3000:]}"
    return set(json.loads(out.stdout.splitlines()[-1]))


def _aitrados(mods: set[str]) -> set[str]:
    return {m for m in mods if m == "aitrados" or m.startswith("aitrados.")}


def _in(module: str, layer: str) -> bool:
    return module == layer or module.startswith(layer + ".")


def _present(layer: str) -> bool:
    return importlib.util.find_spec(layer) is not None


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layer_imports_only_what_the_table_allows(layer: str) -> None:
    if not _present(layer):
        pytest.skip(f"{layer} is not in this tree")
    mods = loaded_by(layer)
    allowed = BASE | (_aitrados(loaded_by(*ALLOWED[layer], whole=False)) if ALLOWED[layer] else set())
    extra = sorted(m for m in _aitrados(mods) if not _in(m, layer) and m not in allowed)
    assert not extra, f"{layer} loads {extra}, beyond what docs/architecture.md allows it"
    bad = sorted(p for p in FORBIDDEN_THIRD_PARTY.get(layer, ()) if p in mods)
    assert not bad, f"{layer} loads {bad}"


def test_bus_rpc_loads_the_bus_alone() -> None:
    """The case the issue measured: ``import aitrados.bus.rpc`` loaded 31 aitrados modules (trading,
    marketdata, the settings) and httpx; now only bus modules."""
    mods = loaded_by("aitrados.bus.rpc", whole=False)
    ours = _aitrados(mods)
    assert ours - BASE <= {m for m in ours if _in(m, "aitrados.bus")}, sorted(ours)
    assert "aitrados.bus.settings" in ours and "httpx" not in mods and "pandas" not in mods


def test_composed_settings_load_only_settings_models() -> None:
    """``aitrados.settings`` nests the layers' settings: importing it loads no engine, broker, LLM
    client, strategy, router or ZeroMQ."""
    mods = loaded_by("aitrados.settings", whole=False)
    packages = {"aitrados.bus", "aitrados.marketdata", "aitrados.trading", PLUGIN_HOST}
    extra = sorted(m for m in _aitrados(mods) - BASE - packages
                   if not m.rsplit(".", 1)[-1].endswith("settings"))
    assert not extra, f"aitrados.settings loads {extra}"
    assert not {"zmq", "httpx", "pandas"} & mods


def test_layer_settings_modules_are_plain() -> None:
    """Each layer's settings module loads only its package and itself (pydantic aside)."""
    for name in ("aitrados.bus.settings", "aitrados.marketdata.settings", "aitrados.trading.settings"):
        package = name.rsplit(".", 1)[0]
        assert _aitrados(loaded_by(name, whole=False)) - BASE == {package, name}, name


def test_the_check_sees_a_forbidden_import() -> None:
    """The probe is not blind: trading's engine does load the market-data models and events, which the
    bus's row would refuse."""
    mods = _aitrados(loaded_by("aitrados.trading.engine", whole=False))
    assert {"aitrados.marketdata.models", "aitrados.events"} <= mods
    assert any(not _in(m, "aitrados.bus") and m not in BASE for m in mods)


def test_engine_from_settings_still_importable_from_settings() -> None:
    """Plugins made from the old template import it from the settings module; that still works and
    loads the engine only then."""
    from aitrados.trading import engine, settings

    assert settings.engine_from_settings is engine.engine_from_settings


def test_imports_inside_the_package_are_relative() -> None:
    """One import style inside ``core/`` (the ``aitrados`` package): relative. ``plugins/`` and
    ``strategies/`` are other packages and import ``aitrados.`` absolutely."""
    import ast
    from pathlib import Path

    import aitrados

    absolute = []
    for path in Path(aitrados.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            absolute += [f"{path.name}:{node.lineno}" for n in names if n == "aitrados" or n.startswith("aitrados.")]
    assert not absolute, f"absolute aitrados imports inside the package: {absolute}"
