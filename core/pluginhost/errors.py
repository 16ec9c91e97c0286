"""The errors of the plugin host: a plugin could not be found, loaded, configured or called."""

from __future__ import annotations

from ..errors import AitradosError


class PluginError(AitradosError):
    """A plugin could not be found, loaded, configured or called."""


class UnknownPluginError(PluginError):
    """A selected plugin name is not installed."""


class PluginLoadError(PluginError):
    """A plugin failed to load (strict mode raises this instead of skipping the plugin)."""


__all__ = ["PluginError", "PluginLoadError", "UnknownPluginError"]
