"""The contribution hooks (``register_*``): one record per hook, in one table.

A plugin contributes things by calling the ``register`` callback its ``register_*`` hook gets.
Each call is checked by the hook's ``Contribution`` record: ``accept`` validates the
arguments and returns the key and value to store, ``what`` names the kind of thing in errors,
``view`` names the ``PluginRegistry`` property it is read through. Adding a contribution hook
is one hook specification (``hookspecs.py``) plus one record in ``CONTRIBUTIONS``: the registry
calls, stages, checks for duplicates and stores by the table (``registry.contributed[hook]``).

Errors are ``PluginError`` messages starting with the hook's name; the registry adds the
plugin's name and undoes every contribution of a plugin when any of them fails.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from .errors import PluginError

_MISSING = inspect.Parameter.empty
_COMMAND_NAME = re.compile(r"^[a-z][a-z0-9-]{0,40}$")


class ContributionError(PluginError):
    """One ``register(...)`` call is wrong; the message says how (without the hook's name)."""


@dataclass(frozen=True)
class Arguments:
    """The positional and keyword arguments of one ``register(...)`` call."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    def get(self, i: int, key: str, default: Any = _MISSING) -> Any:
        """Argument number *i* or keyword *key*; *default* when absent (required when no default)."""
        if len(self.args) > i:
            return self.args[i]
        if key in self.kwargs:
            return self.kwargs[key]
        if default is _MISSING:
            raise ContributionError(f"register() needs the argument {key!r}")
        return default


#: ``accept(arguments, what)``: validates one call, returns ``(key, value)`` to store.
Accept = Callable[[Arguments, str], tuple[str, Any]]


@dataclass(frozen=True)
class Contribution:
    """How one contribution hook's ``register(...)`` calls are checked, stored and named.

    :param hook: the hook's name (a ``register_*`` specification in ``hookspecs.py``)
    :param what: what one contribution is called in errors ("service", "risk rule")
    :param accept: validates one call's arguments; returns ``(key, value)`` (raises ``ContributionError``)
    :param view: the name of the ``PluginRegistry`` property that reads them by key (e.g.
        ``registry.services``); None for the settings model, of which a plugin declares one
        and which the registry validates at once (``registry.plugin_settings``)
    """

    hook: str
    what: str
    accept: Accept
    view: str | None

    @property
    def one_per_plugin(self) -> bool:
        """True when a plugin contributes at most one (its settings model)."""
        return self.view is None


# ---------------------------------------------------------------- validators
def _settings_model(a: Arguments, what: str) -> tuple[str, Any]:
    model = a.get(0, "model")
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise ContributionError(f"expected a pydantic BaseModel subclass, got {model!r}")
    if model.model_config.get("extra") != "forbid":
        raise ContributionError(f"{model.__name__} must set model_config = ConfigDict(extra='forbid') so a "
                                "mistyped setting is an error")
    return "model", model


def _service(a: Arguments, what: str) -> tuple[str, Any]:
    from ..bus.service import Service

    svc = a.get(0, "service")
    if not isinstance(svc, Service):
        raise ContributionError(f"expected an aitrados.bus.Service instance, got {svc!r}")
    if not svc.name:
        raise ContributionError(f"{type(svc).__name__} has no `name`")
    return svc.name, svc


def _command(a: Arguments, what: str) -> tuple[str, Any]:
    name, handler = a.get(0, "name"), a.get(1, "handler")
    if not isinstance(name, str) or not _COMMAND_NAME.match(name):
        raise ContributionError(f"command name {name!r} must be lower-case letters, digits and '-'")
    if not callable(handler):
        raise ContributionError(f"handler of {name!r} is not callable")
    configure = a.get(3, "configure", None)
    if configure is not None and not callable(configure):
        raise ContributionError(f"configure of {name!r} is not callable")
    return name, {"handler": handler, "help": a.get(2, "help", ""), "configure": configure}


def _strategy(a: Arguments, what: str) -> tuple[str, Any]:
    from ..trading.strategy import Strategy

    strategy = a.get(0, "strategy")
    if not isinstance(strategy, Strategy):
        hint = " (register an instance: register(MyStrategy(...)))" if isinstance(strategy, type) else ""
        raise ContributionError(f"expected an aitrados.trading.Strategy instance, got {strategy!r}{hint}")
    name = strategy.strategy_name
    if not isinstance(name, str) or not name:
        raise ContributionError(f"{type(strategy).__name__} has no name; set `name = '...'`")
    return name, strategy


def _named(value_arg: str, check: Callable[[Any], bool] | None = None, expected: str = "") -> Accept:
    """A validator of ``register(name, value)``: a non-empty name, a value that is not None (and passes *check*)."""

    def accept(a: Arguments, what: str) -> tuple[str, Any]:
        name, value = a.get(0, "name"), a.get(1, value_arg)
        if not isinstance(name, str) or not name:
            raise ContributionError(f"the {what} name must be a non-empty string, got {name!r}")
        if value is None:
            raise ContributionError(f"{what} {name!r} is None")
        if check is not None and not check(value):
            raise ContributionError(f"{value_arg} {name!r} {expected}")
        return name, value

    return accept


def _is_llm_client(value: Any) -> bool:
    return callable(value) or callable(getattr(value, "complete", None))


# ---------------------------------------------------------------- the table
SETTINGS = Contribution("register_settings", "settings model", _settings_model, None)

#: Every contribution hook, in the order the host calls them (settings first: the others read them).
CONTRIBUTIONS: tuple[Contribution, ...] = (
    SETTINGS,
    Contribution("register_services", "service", _service, "services"),
    Contribution("register_commands", "command", _command, "commands"),
    Contribution("register_providers", "provider", _named("provider"), "providers"),
    Contribution("register_risk_rules", "risk rule",
                 _named("rule", callable, "is not callable (order, context) -> decision"), "risk_rules"),
    Contribution("register_llm_models", "LLM model",
                 _named("client", _is_llm_client, "is neither callable nor has a complete() method"), "llm_models"),
    Contribution("register_strategies", "strategy", _strategy, "strategies"),
)

#: The contribution hooks by name.
BY_HOOK: dict[str, Contribution] = {c.hook: c for c in CONTRIBUTIONS}
#: The contribution hooks called once per plugin at load time, in this order.
REGISTER_HOOKS: tuple[str, ...] = tuple(BY_HOOK)


def add_contribution(hook: str, add: Callable[[str, Any, str], None], into: dict[str, Any],
                     *args: Any, **kwargs: Any) -> None:
    """Validate one ``register(...)`` call of *hook* and store it through *add* (or in *into*, for the settings).

    Raises ``PluginError`` saying, after the hook's name, what is wrong with the contribution.
    """
    c = BY_HOOK.get(hook)
    if c is None:
        raise PluginError(f"{hook}: not a contribution hook (one of {', '.join(REGISTER_HOOKS)})")
    try:
        key, value = c.accept(Arguments(args, kwargs), c.what)
    except ContributionError as exc:
        raise PluginError(f"{hook}: {exc}") from None
    if c.one_per_plugin:
        if key in into:
            raise PluginError(f"{hook}: a plugin declares one {c.what}")
        into[key] = value
    else:
        add(key, value, c.what)


__all__ = ["BY_HOOK", "CONTRIBUTIONS", "REGISTER_HOOKS", "SETTINGS", "Arguments", "Contribution",
           "ContributionError", "add_contribution"]
