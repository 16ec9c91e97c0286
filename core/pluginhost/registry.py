"""The plugin manager: discovery, selection, loading, per-plugin settings and hook calling.

Plugins are found through the entry-point group ``aitrados`` (``ENTRY_POINT_GROUP``) and
loaded one entry point at a time, so one broken plugin (import error, bad hook signature,
unknown hook name, invalid settings, a failing ``register_*`` hook) is reported with its name
and the reason while the rest run; strict mode turns any failure into an error.

``PluginRegistry`` loads and holds the plugins and their contributions; ``HookRunner``
calls hooks (sync or async implementations, errors logged with the plugin's name and
counted). ``aitrados.host.PluginHost`` connects them to the bus.
"""

from __future__ import annotations

import asyncio
import difflib
import inspect
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy
from loguru import logger
from pydantic import BaseModel, ValidationError

from . import hookspecs
from .errors import AitradosError
from .plugin_settings import PluginHostSettings, host_settings_of

#: The entry-point group plugins register under (``[project.entry-points.aitrados]``).
ENTRY_POINT_GROUP = "aitrados"
#: pluggy project name (``from aitrados import hookimpl``).
PROJECT_NAME = "aitrados"

#: The contribution hooks called once per plugin at load time, in this order.
REGISTER_HOOKS: tuple[str, ...] = (
    "register_settings", "register_services", "register_commands",
    "register_providers", "register_risk_rules", "register_llm_models", "register_strategies",
)


class PluginError(AitradosError):
    """A plugin could not be found, loaded, configured or called."""


class UnknownPluginError(PluginError):
    """A selected plugin name is not installed."""


class PluginLoadError(PluginError):
    """A plugin failed to load (strict mode raises this instead of skipping the plugin)."""


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


def _run_sync(value: Any) -> Any:
    """Await *value* when it is awaitable (used where no event loop runs)."""
    if inspect.isawaitable(value):
        async def wait() -> Any:
            return await value
        return asyncio.run(wait())
    return value


class PluginRegistry:
    """Loads plugins one entry point at a time and holds them and their contributions.

    :param settings: the effective ``Settings`` (``plugins`` and ``plugin_host`` are read)
    :param strict: raise on the first failure instead of reporting it (default: the setting)
    """

    def __init__(self, settings: Any, strict: bool | None = None) -> None:
        self.settings = settings
        self.host_settings = host_settings_of(settings)
        self.strict = self.host_settings.strict if strict is None else strict
        self.pm = make_plugin_manager()
        self.infos: dict[str, PluginInfo] = {}
        self.objects: dict[str, Any] = {}
        self.settings_models: dict[str, type[BaseModel]] = {}
        self.plugin_settings: dict[str, BaseModel | None] = {}
        self.services: dict[str, tuple[str, Any]] = {}
        self.commands: dict[str, tuple[str, dict[str, Any]]] = {}
        self.providers: dict[str, tuple[str, Any]] = {}
        self.risk_rules: dict[str, tuple[str, Any]] = {}
        self.llm_models: dict[str, tuple[str, Any]] = {}
        #: Strategies by ``strategy_name`` (``aitrados.trading.Strategy`` instances) ...
        self.strategies: dict[str, Any] = {}
        #: ... and the plugin that registered each.
        self.strategy_plugins: dict[str, str] = {}
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
        ``register_*`` hooks run, so those find them in ``register.settings``.
        """
        staged: dict[str, dict[str, Any]] = {h: {} for h in REGISTER_HOOKS}
        try:
            for hook in REGISTER_HOOKS:
                impl = self._impl(obj, hook)
                if impl is not None:
                    self._call_register(name, hook, impl, staged[hook])
                if hook == "register_settings":
                    self._apply_settings(name, staged["register_settings"].get("model"))
        except PluginError:
            self.plugin_settings.pop(name, None)
            self.settings_models.pop(name, None)
            self.pm.unregister(obj)
            self.objects.pop(name, None)
            raise
        for key, target in (("register_services", self.services), ("register_commands", self.commands),
                            ("register_providers", self.providers), ("register_risk_rules", self.risk_rules),
                            ("register_llm_models", self.llm_models)):
            for k, v in staged[key].items():
                target[k] = (name, v)
        for k, v in staged["register_strategies"].items():
            self.strategies[k] = v
            self.strategy_plugins[k] = name

    def _call_register(self, plugin: str, hook: str, impl: Any, into: dict[str, Any]) -> None:
        existing: dict[str, Any] = {"register_services": self.services, "register_commands": self.commands,
                                    "register_providers": self.providers, "register_risk_rules": self.risk_rules,
                                    "register_llm_models": self.llm_models}.get(hook, {})
        if hook == "register_strategies":
            existing = {k: (p, self.strategies[k]) for k, p in self.strategy_plugins.items()}

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
            _run_sync(impl.function(register=register) if "register" in impl.argnames else impl.function())
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


_COMMAND_NAME = re.compile(r"^[a-z][a-z0-9-]{0,40}$")


def add_contribution(hook: str, add: Callable[[str, Any, str], None], into: dict[str, Any],
                     *args: Any, **kwargs: Any) -> None:
    """Validate one ``register(...)`` call of *hook* and store it through *add*.

    Raises ``PluginError`` saying what is wrong with the contribution.
    """
    from .bus.service import Service

    def argument(i: int, key: str, default: Any = inspect.Parameter.empty) -> Any:
        if len(args) > i:
            return args[i]
        if key in kwargs:
            return kwargs[key]
        if default is inspect.Parameter.empty:
            raise PluginError(f"{hook}: register() needs the argument {key!r}")
        return default

    if hook == "register_settings":
        model = argument(0, "model")
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise PluginError(f"register_settings: expected a pydantic BaseModel subclass, got {model!r}")
        if model.model_config.get("extra") != "forbid":
            raise PluginError(f"register_settings: {model.__name__} must set model_config = "
                              "ConfigDict(extra='forbid') so a mistyped setting is an error")
        if "model" in into:
            raise PluginError("register_settings: a plugin declares one settings model")
        into["model"] = model
    elif hook == "register_services":
        svc = argument(0, "service")
        if not isinstance(svc, Service):
            raise PluginError(f"register_services: expected an aitrados.bus.Service instance, got {svc!r}")
        if not svc.name:
            raise PluginError(f"register_services: {type(svc).__name__} has no `name`")
        add(svc.name, svc, "service")
    elif hook == "register_commands":
        name, handler = argument(0, "name"), argument(1, "handler")
        if not isinstance(name, str) or not _COMMAND_NAME.match(name):
            raise PluginError(f"register_commands: command name {name!r} must be lower-case letters, digits and '-'")
        if not callable(handler):
            raise PluginError(f"register_commands: handler of {name!r} is not callable")
        configure = argument(3, "configure", None)
        if configure is not None and not callable(configure):
            raise PluginError(f"register_commands: configure of {name!r} is not callable")
        add(name, {"handler": handler, "help": argument(2, "help", ""), "configure": configure}, "command")
    elif hook == "register_strategies":
        from .trading.strategy import Strategy

        strategy = argument(0, "strategy")
        if not isinstance(strategy, Strategy):
            hint = " (register an instance: register(MyStrategy(...)))" if isinstance(strategy, type) else ""
            raise PluginError(f"register_strategies: expected an aitrados.trading.Strategy instance, "
                              f"got {strategy!r}{hint}")
        name = strategy.strategy_name
        if not isinstance(name, str) or not name:
            raise PluginError(f"register_strategies: {type(strategy).__name__} has no name; set `name = '...'`")
        add(name, strategy, "strategy")
    elif hook in ("register_providers", "register_risk_rules", "register_llm_models"):
        what = {"register_providers": "provider", "register_risk_rules": "risk rule",
                "register_llm_models": "LLM model"}[hook]
        name = argument(0, "name")
        value = argument(1, {"register_providers": "provider", "register_risk_rules": "rule",
                             "register_llm_models": "client"}[hook])
        if not isinstance(name, str) or not name:
            raise PluginError(f"{hook}: the {what} name must be a non-empty string, got {name!r}")
        if value is None:
            raise PluginError(f"{hook}: {what} {name!r} is None")
        if hook == "register_risk_rules" and not callable(value):
            raise PluginError(f"register_risk_rules: rule {name!r} is not callable (order, context) -> decision")
        if hook == "register_llm_models" and not (callable(value) or callable(getattr(value, "complete", None))):
            raise PluginError(f"register_llm_models: client {name!r} is neither callable nor has a complete() method")
        add(name, value, what)
    else:  # pragma: no cover - REGISTER_HOOKS and this function change together
        raise PluginError(f"no contribution rules for {hook}")


# ==================================================================== hook calling
@dataclass
class OrderCheck:
    """The outcome of ``check_order``: accepted or not, why, and which plugin decided."""

    accepted: bool
    reason: str = ""
    plugin: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for the bus)."""
        return {"accepted": self.accepted, "reason": self.reason, "plugin": self.plugin}


def decision_of(plugin: str, result: Any) -> OrderCheck | None:
    """Turn one ``check_order`` result into a decision (None = no opinion)."""
    if result is None:
        return None
    if isinstance(result, OrderCheck):
        return result
    if result is True:
        return OrderCheck(True, "", plugin)
    if result is False:
        return OrderCheck(False, f"rejected by plugin {plugin!r}", plugin)
    if isinstance(result, str):
        return OrderCheck(False, result, plugin)
    if isinstance(result, dict) and "accepted" in result:
        return OrderCheck(bool(result["accepted"]), str(result.get("reason", "")), result.get("plugin") or plugin)
    return OrderCheck(False, f"plugin {plugin!r} returned {type(result).__name__} from check_order; "
                             "expected None, True, False or a reason string", plugin)


_LOG_AT = frozenset((2, 3, 10, 100, 1000))


class HookRunner:
    """Calls hook implementations one by one: sync or async, errors logged and counted per plugin.

    :param pm: the plugin manager holding the implementations
    :param loop: an event loop running in another thread; sync callers hand coroutines to it
    """

    def __init__(self, pm: pluggy.PluginManager, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.pm = pm
        self.loop = loop
        self.errors: Counter[tuple[str, str]] = Counter()
        self.calls: Counter[str] = Counter()
        self._cache: dict[str, tuple[int, list[Any]]] = {}

    def impls(self, hook: str) -> list[Any]:
        """Implementations of *hook* in pluggy's call order (last registered first, tryfirst honoured)."""
        caller = getattr(self.pm.hook, hook, None)
        if caller is None:
            return []
        raw = caller.get_hookimpls()
        hit = self._cache.get(hook)
        if hit is not None and hit[0] == len(raw):  # registrations only happen at load time
            return hit[1]
        out = list(reversed(raw))
        self._cache[hook] = (len(raw), out)
        return out

    def implemented(self, hook: str) -> bool:
        """True if any loaded plugin implements *hook*."""
        return bool(self.impls(hook))

    @staticmethod
    def _kwargs(impl: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        return {a: kwargs[a] for a in impl.argnames if a in kwargs}

    def _failed(self, plugin: str, hook: str, exc: BaseException) -> None:
        """Count the error; log the first with its traceback, then the 10th, 100th, ... (no log floods)."""
        n = self.errors[(plugin, hook)] = self.errors[(plugin, hook)] + 1
        if n == 1:
            logger.opt(exception=exc).error("plugin {!r} hook {} raised {}: {}", plugin, hook, type(exc).__name__, exc)
        elif n in _LOG_AT or n % 10_000 == 0:
            logger.error("plugin {!r} hook {} raised {}: {} (error #{} of this hook; counted, logged at "
                         "10, 100, 1000... )", plugin, hook, type(exc).__name__, exc, n)

    async def anotify(self, hook: str, **kwargs: Any) -> int:
        """Call every implementation of notification *hook*, awaiting async ones; returns the number that raised."""
        failed = 0
        self.calls[hook] += 1
        for impl in self.impls(hook):
            try:
                r = impl.function(**self._kwargs(impl, kwargs))
                if inspect.isawaitable(r):
                    await r
            except Exception as exc:
                failed += 1
                self._failed(impl.plugin_name, hook, exc)
        return failed

    def notify(self, hook: str, **kwargs: Any) -> int:
        """Sync twin of ``anotify``: usable from any thread (not from inside the host's loop)."""
        loop = self.loop
        if loop is not None and loop.is_running():
            if _in_loop(loop):
                raise RuntimeError(f"notify({hook!r}) called inside the host's event loop; use `await anotify(...)`")
            return asyncio.run_coroutine_threadsafe(self.anotify(hook, **kwargs), loop).result()
        failed = 0
        self.calls[hook] += 1
        for impl in self.impls(hook):
            try:
                _run_sync(impl.function(**self._kwargs(impl, kwargs)))
            except Exception as exc:
                failed += 1
                self._failed(impl.plugin_name, hook, exc)
        return failed

    async def acheck(self, hook: str, **kwargs: Any) -> OrderCheck | None:
        """Call firstresult *hook* until one returns non-None; a raising implementation rejects (fail closed)."""
        self.calls[hook] += 1
        for impl in self.impls(hook):
            try:
                r = impl.function(**self._kwargs(impl, kwargs))
                if inspect.isawaitable(r):
                    r = await r
            except Exception as exc:
                self._failed(impl.plugin_name, hook, exc)
                return OrderCheck(False, f"plugin {impl.plugin_name!r} {hook} raised {type(exc).__name__}: {exc}",
                                  impl.plugin_name)
            d = decision_of(impl.plugin_name, r)
            if d is not None:
                return d
        return None

    def check(self, hook: str, **kwargs: Any) -> OrderCheck | None:
        """Sync twin of ``acheck``."""
        loop = self.loop
        if loop is not None and loop.is_running() and not _in_loop(loop):
            return asyncio.run_coroutine_threadsafe(self.acheck(hook, **kwargs), loop).result()
        if loop is not None and _in_loop(loop):
            raise RuntimeError(f"check({hook!r}) called inside the host's event loop; use `await acheck(...)`")
        return asyncio.run(self.acheck(hook, **kwargs))

    def error_counts(self) -> dict[str, dict[str, int]]:
        """Errors per plugin and hook."""
        out: dict[str, dict[str, int]] = {}
        for (plugin, hook), n in self.errors.items():
            out.setdefault(plugin, {})[hook] = n
        return out


def _in_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


class LoopThread:
    """An asyncio event loop in a daemon thread: where the host runs hooks and the event pump."""

    def __init__(self, name: str = "aitrados-plugins") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._started = threading.Event()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._started.set)
        try:
            self.loop.run_forever()
        finally:
            pending = asyncio.all_tasks(self.loop)
            for t in pending:
                t.cancel()
            if pending:
                self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.close()

    def start(self) -> LoopThread:
        """Start the thread; returns once the loop runs."""
        self._thread.start()
        self._started.wait(5)
        return self

    def run(self, coro: Any, timeout: float | None = None) -> Any:
        """Run *coro* on the loop from another thread and return its result."""
        if _in_loop(self.loop):
            coro.close()
            raise RuntimeError("a blocking call from inside a hook would wait for itself: make the hook "
                               "`async def` and await the async variant (e.g. `await host.acheck_order(...)`)")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop (pending tasks are cancelled) and join the thread."""
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)


__all__ = [
    "ENTRY_POINT_GROUP", "HookRunner", "LoopThread", "OrderCheck", "PluginError", "PluginInfo",
    "PluginLoadError", "PluginRegistry", "UnknownPluginError", "all_hook_names", "decision_of",
    "installed_plugins", "make_plugin_manager", "resolve_selection",
]
