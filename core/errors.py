"""The root of aitrados's errors: ``except AitradosError`` catches every error the package raises
on purpose.

Each layer derives its own family from it (:class:`aitrados.bus.errors.BusError`,
:class:`aitrados.marketdata.errors.MarketDataError`, the plugin host's ``PluginError``,
:class:`aitrados.trading.llm.LLMError` ...). Classes that callers already caught as a built-in
keep that base too (``BindError`` is still a ``RuntimeError``, ``OptionError`` a ``ValueError``).
This module imports nothing, so every layer may use it.
"""

from __future__ import annotations

__all__ = ["AitradosError"]


class AitradosError(Exception):
    """Base of every exception class defined in aitrados."""
