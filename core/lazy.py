"""Lazy package exports: a package names what it exports and loads each module on first use.

A layer's ``__init__`` that imported every submodule would make ``import aitrados.bus.settings``
(or ``aitrados.trading.settings``) load the whole layer: the composed settings would pull in ZeroMQ,
the broker and the engine. With :func:`lazy_exports` the package's ``from aitrados.bus import
Service`` keeps working, and importing one submodule loads only that module and what it imports.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, namespace: dict[str, Any],
                 exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module ``__getattr__`` and ``__dir__`` of *package* exporting *exports* lazily.

    :param package: the package's ``__name__``
    :param namespace: the package's ``globals()`` (a loaded name is cached there)
    :param exports: exported name -> submodule that defines it (``{"Service": "service"}``)
    :returns: ``(__getattr__, __dir__)`` to assign in the package's ``__init__``
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
