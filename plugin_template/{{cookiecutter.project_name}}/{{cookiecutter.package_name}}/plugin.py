"""The {{ cookiecutter.plugin_name }} plugin: the hooks through which aitrados finds its settings and its strategy.

``pip install`` registers this module under the entry-point group ``aitrados`` (see
pyproject.toml); ``aitrados run --plugins {{ cookiecutter.plugin_name }}`` loads it, validates
``[plugins.{{ cookiecutter.plugin_name }}]`` against :class:`BreakoutSettings`, and runs the
strategy registered here over the replay, then writes the report.
"""

from __future__ import annotations

from typing import Any

from aitrados import hookimpl

from .strategy import NAME, Breakout, BreakoutSettings

__all__ = ["NAME", "register_settings", "register_strategies"]


@hookimpl
def register_settings(register: Any) -> None:
    """Declare the plugin's settings model."""
    register(BreakoutSettings)


@hookimpl
def register_strategies(register: Any) -> None:
    """Register one :class:`Breakout` built from the validated settings (``register.settings``)."""
    register(Breakout(register.settings))
