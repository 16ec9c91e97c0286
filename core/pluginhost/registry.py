"""The plugin registry: discovery, selection, loading and what each plugin contributed.

Plugins are found through the entry-point group ``aitrados`` (``ENTRY_POINT_GROUP``) and
loaded one entry point at a time, so one broken plugin (import error, bad hook signature,
unknown hook name, invalid settings, a failing ``register_*`` hook) is reported with its name
and the reason while the rest run; strict mode turns any failure into an error.

``PluginRegistry`` loads and holds the plugins and their contributions (checked by the
records of :mod:`aitrados.pluginhost.contributions`); ``HookRunner``
(:mod:`aitrados.pluginhost.hook_runner`) calls hooks; ``aitrados.pluginhost.host.PluginHost``
connects them to the bus.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy
from loguru import logger
from pydantic import BaseModel, ValidationError

from . import hookspecs
from .contributions import CONTRIBUTIONS, SETTINGS, Contribution, add_contribution
from .errors import PluginError, PluginLoadError, UnknownPluginError
from .hook_runner import run_sync
from .settings import PluginHostSettings, host_settings_of

#: The entry-point group plugins register under (``[project.entry-points.aitrados]``).
ENTRY_POINT_GROUP = "aitrados"
#: pluggy project name (``from aitrados import hookimpl``).
PROJECT_NAME = "aitrados"


def all_hook_names() -> list[str]:
    """Names of every hook specification, in declaration order."""
    return [n for n, f in vars(hookspecs).items()
            if callable(f) and hasattr(f, f"{PROJECT_NAME}_spec")]


def make_plugin_manager() -> pluggy.PluginManager:
    """A pluggy manager with the aitrados hook specifications added."""
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    return pm


@dataclass
class PluginInfo:
    """What the host knows about one installed plugin."""

    name: str
    value: str = ""
    dist: str | None = None
    version: str | None = None
    status: str = "not loaded"  # loaded | failed | isolated | not loaded
    reason: str | None = None
    hooks: list[str] = field(default_factory=list)
    isolated: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON output."""
        return {"name": self.name, "entry_point": self.value, "distribution": self.dist, "version": self.version,
                "status": self.status, "reason": self.reason, "hooks": list(self.hooks), "isolated": self.isolated}


def installed_plugins() -> tuple[dict[str, EntryPoint], list[str]]:
    """Entry points of group ``aitrados`` by name, and warnings about duplicate names."""
    found: dict[str, EntryPoint] = {}
    warnings: list[str] = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in found:
            first = found[ep.name]
            if first.value != ep.value:
                warnings.append(f"plugin name {ep.name!r} is installed twice ({_dist_label(first)} and "
                                f"{_dist_label(ep)}); using the first: uninstall one of them")
            continue
        found[ep.name] = ep
    return found, warnings


def _dist_label(ep: EntryPoint) -> str:
    d = ep.dist
    return f"{d.metadata['Name']} {d.version}" if d is not None else ep.value


def resolve_selection(installed: Iterable[str], names: Iterable[str] | None, host: PluginHostSettings) -> list[str]:
    """The plugin names to load: *names* (or the settings' default, or all installed) plus ``always``.

    Raises ``UnknownPluginError`` naming the unknown plugins and listing the installed ones.
    """
    inst = sorted(installed)
    if names is None:
        names = host.default if host.default is not None else inst
    chosen: list[str] = []
    for n in [*host.always, *names]:
        n = n.strip()
        if n and n not in chosen:
            chosen.append(n)
    unknown = [n for n in chosen if n not in inst]
    if unknown:
        hint = ", ".join(inst) if inst else "none (pip install a plugin, or `aitrados new-plugin NAME`)"
        raise UnknownPluginError(f"unknown plugin(s): {', '.join(unknown)}; installed: {hint}")
    return chosen


def _settings_error(plugin: str, exc: ValidationError) -> str:
    parts = []
    for e in exc.errors():
        loc = ".".join(str(x) for x in e.get("loc", ())) or "(root)"
        parts.append(f"field {loc!r}: {e.get('msg')}")
    return (f"invalid settings for plugin {plugin!r}: {'; '.join(parts)} "
            f"(fix plugins.{plugin} in aitrados.toml or AITRADOS_PLUGINS__{plugin.upper()}__<FIELD>)")


class PluginRegistry:
    """Loads plugins one entry point at a time and holds them and their contributions.

    :param settings: the effective ``Settings`` (``plugins`` and ``plugin_host`` are read)
    :param strict: raise on the first failure instead of reporting it (default: the setting)
    :param host_settings: the plugin host's settings (default: ``settings.plugin_host``)
    """

    def __init__(self, settings: Any, strict: bool | None = None,
                 host_settings: PluginHostSettings | None = None) -> None:
        self.settings = settings
        self.host_settings = host_settings or host_settings_of(settings)
        self.strict = self.host_settings.strict if strict is None else strict
        self.pm = make_plugin_manager()
        self.infos: dict[str, PluginInfo] = {}
        self.objects: dict[str, Any] = {}
        self.settings_models: dict[str, type[BaseModel]] = {}
        self.plugin_settings: dict[str, BaseModel | None] = {}
        #: What the loaded plugins contributed: hook -> key -> (plugin, value) (see ``contributions``).
        self.contributed: dict[str, dict[str, tuple[str, Any]]] = {
            c.hook: {} for c in CONTRIBUTIONS if not c.one_per_plugin}
        self.installed, self.warnings = installed_plugins()
        for w in self.warnings:
            logger.warning(w)
        for name, ep in self.installed.items():
            d = ep.dist
            self.infos[name] = PluginInfo(name, ep.value, d.metadata["Name"] if d else None, d.version if d else None)

    # ---------------------------------------------------------------- loading
    def select(self, names: Iterable[str] | None) -> list[str]:
        """Resolve *names* against the installed plugins (see ``resolve_selection``).

        A name of the form ``module:attribute`` is an entry point given directly (an
        importable plugin that is not installed as a distribution, e.g. an example script).
        """
        names = list(names) if names is not None else None
        for n in [*(names or ()), *self.host_settings.always]:
            n = n.strip()
            if ":" in n and n not in self.installed:
                mod, _, attr = n.partition(":")
                if not all(p.isidentifier() for part in (mod, attr) for p in part.split(".")):
                    raise UnknownPluginError(f"plugin {n!r}: a plugin given directly is module:attribute "
                                             "(e.g. my_pkg.plugin:Plugin), else an installed plugin name")
                self.installed[n] = EntryPoint(name=n, value=n, group=ENTRY_POINT_GROUP)
                self.infos[n] = PluginInfo(n, n)
        return resolve_selection(self.installed, names, self.host_settings)

    def load(self, names: Iterable[str]) -> list[PluginInfo]:
        """Load each named plugin on its own; returns their infos (loaded or failed with a reason)."""
        out = []
        for name in names:
            out.append(self.load_one(name))
        unknown_cfg = sorted(set(self.settings_dict()) - set(self.installed))
        if unknown_cfg:
            logger.warning("settings for plugin(s) that are not installed: {} (installed: {})",
                           ", ".join(unknown_cfg), ", ".join(sorted(self.installed)) or "none")
        return out

    def settings_dict(self) -> dict[str, Any]:
        """The raw per-plugin settings (``Settings.plugins``)."""
        return dict(getattr(self.settings, "plugins", None) or {})

    def load_one(self, name: str) -> PluginInfo:
        """Import, register, validate and collect the contributions of plugin *name*."""
        info = self.infos[name]
        if info.status == "loaded":
            return info
        ep = self.installed[name]
        try:
            obj = self._import(name, ep)
            self._register(name, obj)
            self._collect(name, obj)
        except PluginError as exc:
            info.status, info.reason = "failed", str(exc)
            if self.strict:  # the caller reports it (once) and stops
                raise PluginLoadError(f"plugin {name!r} failed to load: {exc}") from exc
            logger.error("plugin {!r} not loaded: {}", name, exc)
            return info
        info.status, info.reason = "loaded", None
        info.hooks = sorted(c.name for c in (self.pm.get_hookcallers(obj) or []))
        logger.debug("plugin {!r} loaded ({}), hooks: {}", name, info.value, ", ".join(info.hooks) or "none")
        return info

    def _import(self, name: str, ep: EntryPoint) -> Any:
        try:
            obj = ep.load()
        except Exception as exc:
            raise PluginError(f"import of {ep.value!r} failed: {type(exc).__name__}: {exc}") from exc
        if isinstance(obj, type):
            try:
                obj = obj()
            except Exception as exc:
                raise PluginError(f"creating {ep.value}() failed: {type(exc).__name__}: {exc}") from exc
        return obj

    def _register(self, name: str, obj: Any) -> None:
        try:
            self.pm.register(obj, name=name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"bad hook signature: {exc}") from exc
        except ValueError as exc:
            raise PluginError(f"cannot register: {exc}") from exc
        problems = []
        known = all_hook_names()
        for caller in self.pm.get_hookcallers(obj) or []:
            if not caller.has_spec():
                close = difflib.get_close_matches(caller.name, known, n=1)
                problems.append(f"unknown hook {caller.name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            for impl in caller.get_hookimpls():
                if impl.plugin is obj and (impl.hookwrapper or getattr(impl, "wrapper", False)):
                    problems.append(f"hook {caller.name!r} is a wrapper; the aitrados host calls plain hooks only")
        if problems:
            self.pm.unregister(obj)
            raise PluginError("; ".join(problems) + f" (hooks: see docs/plugins.md)")
        self.objects[name] = obj

    def _impl(self, obj: Any, hook: str) -> Any:
        for impl in getattr(self.pm.hook, hook).get_hookimpls():
            if impl.plugin is obj:
                return impl
        return None

    def _collect(self, name: str, obj: Any) -> None:
        """Call the plugin's register_* hooks; on any error undo everything it contributed.

        ``register_settings`` runs first and the settings are validated before the other
        ``register_*`` hooks run, so those find them in ``register.settings``. Nothing is
        stored until every hook of the plugin succeeded (all or nothing).
        """
        staged: dict[str, dict[str, Any]] = {c.hook: {} for c in CONTRIBUTIONS}
        try:
            for c in CONTRIBUTIONS:
                impl = self._impl(obj, c.hook)
                if impl is not None:
                    self._call_register(name, c, impl, staged[c.hook])
                if c is SETTINGS:
                    self._apply_settings(name, staged[c.hook].get("model"))
        except PluginError:
            self.plugin_settings.pop(name, None)
            self.settings_models.pop(name, None)
            self.pm.unregister(obj)
            self.objects.pop(name, None)
            raise
        for hook, target in self.contributed.items():
            for k, v in staged[hook].items():
                target[k] = (name, v)

    def _call_register(self, plugin: str, c: Contribution, impl: Any, into: dict[str, Any]) -> None:
        """Call one ``register_*`` implementation of *plugin*, staging what it registers in *into*."""
        hook = c.hook
        existing = self.contributed.get(hook, {})

        def add(key: str, value: Any, what: str) -> None:
            if key in into:
                raise PluginError(f"{hook}: {what} {key!r} registered twice")
            if key in existing:
                raise PluginError(f"{hook}: {what} {key!r} is already registered by plugin {existing[key][0]!r}")
            into[key] = value

        def register(*args: Any, **kwargs: Any) -> None:
            try:
                add_contribution(hook, add, into, *args, **kwargs)
            except PluginError as exc:
                raise PluginError(f"plugin {plugin!r} {exc}") from None

        register.plugin = plugin  # type: ignore[attr-defined]
        register.settings = self.plugin_settings.get(plugin)  # type: ignore[attr-defined]

        try:
            run_sync(impl.function(register=register) if "register" in impl.argnames else impl.function())
        except PluginError:
            raise
        except Exception as exc:
            raise PluginError(f"plugin {plugin!r} {hook} raised {type(exc).__name__}: {exc}") from exc

    def _apply_settings(self, name: str, model: type[BaseModel] | None) -> None:
        raw = self.settings_dict().get(name)
        if model is None:
            if raw:
                keys = ", ".join(sorted(raw)) if isinstance(raw, dict) else repr(raw)
                raise PluginError(f"plugin {name!r} takes no settings but plugins.{name} sets {keys}; remove them")
            self.plugin_settings[name] = None
            return
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise PluginError(f"plugins.{name} must be a table of settings, not {type(raw).__name__}")
        try:
            self.plugin_settings[name] = model(**raw)
        except ValidationError as exc:
            raise PluginError(_settings_error(name, exc)) from exc
        self.settings_models[name] = model

    # ---------------------------------------------------------------- views
    def loaded(self) -> list[str]:
        """Names of the loaded plugins."""
        return list(self.objects)

    def values(self, hook: str) -> dict[str, Any]:
        """What the loaded plugins contributed through *hook*, by key (without who contributed it)."""
        return {k: v for k, (_, v) in self.contributed[hook].items()}

    def contributors(self, hook: str) -> dict[str, str]:
        """Which plugin contributed each key of *hook*."""
        return {k: p for k, (p, _) in self.contributed[hook].items()}

    @property
    def services(self) -> dict[str, tuple[str, Any]]:
        """Services by name: ``(plugin, Service)``."""
        return self.contributed["register_services"]

    @property
    def commands(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """Command-line commands by name: ``(plugin, {handler, help, configure})``."""
        return self.contributed["register_commands"]

    @property
    def providers(self) -> dict[str, tuple[str, Any]]:
        """Market-data providers by name: ``(plugin, provider)``."""
        return self.contributed["register_providers"]

    @property
    def risk_rules(self) -> dict[str, tuple[str, Any]]:
        """Risk rules by name: ``(plugin, rule)``."""
        return self.contributed["register_risk_rules"]

    @property
    def llm_models(self) -> dict[str, tuple[str, Any]]:
        """LLM clients by name: ``(plugin, client)``."""
        return self.contributed["register_llm_models"]

    @property
    def strategies(self) -> dict[str, Any]:
        """Strategies (``aitrados.trading.Strategy`` instances) by ``strategy_name``."""
        return self.values("register_strategies")

    @property
    def strategy_plugins(self) -> dict[str, str]:
        """The plugin that registered each strategy, by ``strategy_name``."""
        return self.contributors("register_strategies")


__all__ = [
    "ENTRY_POINT_GROUP", "PluginInfo", "PluginRegistry", "all_hook_names", "installed_plugins",
    "make_plugin_manager", "resolve_selection",
]
