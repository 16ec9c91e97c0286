"""The plugin host: finds, loads and runs plugins against the bus.

Modules, each holding one thing:

- ``hookspecs``: the hook specifications plugins implement (``from aitrados import hookimpl``)
- ``settings``: ``PluginHostSettings`` (the ``plugin_host`` section of the settings)
- ``errors``: ``PluginError`` and its kinds
- ``registry``: discovery, selection and loading (``PluginRegistry``)
- ``contributions``: the ``register_*`` hooks, one record each
- ``order_check``: ``OrderCheck``, the outcome of ``check_order``
- ``hook_runner``: calling hooks (``HookRunner``)
- ``loop_thread``: the event loop thread the hooks run on (``LoopThread``)
- ``host``: ``PluginHost`` and the ``HostContext`` plugins get in ``on_startup``
- ``isolation``: the ``Supervisor`` of isolated plugin worker processes
- ``worker``: the worker process itself (``aitrados worker``)
- ``cli``: the ``plugins``, ``new-plugin`` and ``worker`` commands and plugin-contributed ones

The names below are importable from here; each is loaded on first use, so importing
``aitrados.pluginhost.settings`` (as ``aitrados.settings`` does) loads neither the bus nor pluggy's
plugins.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .errors import PluginError, PluginLoadError, UnknownPluginError
    from .host import HostContext, PluginHost
    from .order_check import OrderCheck
    from .registry import PluginInfo, PluginRegistry
    from .settings import PluginHostSettings

#: Public name -> the module of this package that defines it.
_EXPORTS: dict[str, str] = {
    "PluginError": "errors", "PluginLoadError": "errors", "UnknownPluginError": "errors",
    "HostContext": "host", "PluginHost": "host", "OrderCheck": "order_check",
    "PluginInfo": "registry", "PluginRegistry": "registry", "PluginHostSettings": "settings",
}


def __getattr__(name: str) -> Any:
    """Load a public name from its module on first use."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = sorted(_EXPORTS)
