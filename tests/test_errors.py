"""One root for every error: each exception class defined in the aitrados package derives from
:class:`aitrados.errors.AitradosError`, and no two of them share a name."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections import defaultdict

import pytest

import aitrados
from aitrados.errors import AitradosError

#: Modules not imported by the walk: ``python -m aitrados`` runs the CLI when imported, and the
#: plugin template is data for cookiecutter, not code.
SKIP = ("aitrados.__main__", "aitrados.plugin_template")


def exception_classes() -> list[type[BaseException]]:
    """Every exception class defined (not just imported) in a module of the aitrados package."""
    found: list[type[BaseException]] = []
    for info in pkgutil.walk_packages(aitrados.__path__, "aitrados."):
        if info.name.startswith(SKIP):
            continue
        module = importlib.import_module(info.name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__ == info.name:
                found.append(obj)
    return found


def test_the_walk_finds_the_known_families() -> None:
    names = {c.__name__ for c in exception_classes()}
    assert {"BusError", "BindError", "AlreadyRunningError", "SecurityError", "MarketDataError",
            "UnknownSymbolError", "LLMError", "OptionError"} <= names
    assert any(n.startswith("Plugin") and n.endswith("Error") for n in names)


def test_every_exception_class_derives_from_aitrados_error() -> None:
    outside = sorted(f"{c.__module__}.{c.__qualname__}" for c in exception_classes()
                     if not issubclass(c, AitradosError))
    assert not outside, f"not AitradosError subclasses: {outside}"


def test_one_class_per_error_name() -> None:
    by_name: dict[str, list[str]] = defaultdict(list)
    for c in exception_classes():
        by_name[c.__name__].append(c.__module__)
    twice = {n: m for n, m in by_name.items() if len(m) > 1}
    assert not twice, f"exception names defined more than once: {twice}"


@pytest.mark.parametrize("name, builtin", [
    ("aitrados.bus.binding.BindError", RuntimeError),
    ("aitrados.bus.addresses.AlreadyRunningError", RuntimeError),
    ("aitrados.bus.security.SecurityError", RuntimeError),
    ("aitrados.trading.llm.LLMError", RuntimeError),
    ("aitrados.run_options.OptionError", ValueError),
    ("aitrados.bus.errors.RPCTimeoutError", TimeoutError),
    ("aitrados.marketdata.errors.UnknownSymbolError", LookupError),
])
def test_builtin_bases_callers_catch_are_kept(name: str, builtin: type[BaseException]) -> None:
    module, cls = name.rsplit(".", 1)
    assert issubclass(getattr(importlib.import_module(module), cls), builtin)


def test_bus_errors_are_bus_errors() -> None:
    from aitrados.bus.addresses import AlreadyRunningError
    from aitrados.bus.binding import BindError
    from aitrados.bus.errors import BusError

    assert issubclass(BindError, BusError) and issubclass(AlreadyRunningError, BusError)
