"""Settings of the plugin host itself (which plugins, strictness, isolation, restarts).

Kept apart from ``aitrados.pluginhost.registry`` so ``aitrados.settings`` can import it without pulling
in the bus. Per-plugin settings live in ``Settings.plugins[<name>]``, validated against the
model each plugin declares (see docs/plugins.md).
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class PluginHostSettings(BaseModel):
    """Which plugins the host loads and how it treats failures and isolated workers.

    Environment: ``AITRADOS_PLUGIN_HOST__STRICT=true``, ``AITRADOS_PLUGIN_HOST__ISOLATE='["x"]'``.
    """

    model_config = {"extra": "forbid"}

    default: list[str] | None = Field(
        default_factory=list,
        description="plugins loaded when `--plugins` is not given (default none: the middleware and its data "
                    "services alone); null = every installed plugin")
    always: list[str] = Field(
        default_factory=list, description="plugins loaded in addition to any selection (e.g. the data provider)")
    strict: bool = Field(False, description="any plugin failure (import, hook signature, settings) stops the host")
    isolate: list[str] = Field(
        default_factory=list, description="plugins that run in their own supervised worker process")
    restart_limit: int = Field(5, ge=0, description="restarts of a dead worker before the host gives up on it")
    restart_backoff: float = Field(0.5, gt=0, description="seconds before the first restart; doubles each time")
    restart_backoff_max: float = Field(30.0, gt=0, description="longest wait between restarts, seconds")
    stable_after: float = Field(60.0, gt=0, description="a worker up this long has its restart count reset")
    worker_start_timeout: float = Field(30.0, gt=0, description="seconds a worker may take to load and connect")
    worker_stop_timeout: float = Field(5.0, gt=0, description="seconds a worker gets to stop before it is killed")
    check_timeout: float = Field(2.0, gt=0, description="seconds an isolated plugin's check_order may take; late = rejected")


def host_settings_of(settings: object) -> PluginHostSettings:
    """The ``plugin_host`` section of *settings* (defaults when the field is absent)."""
    value = getattr(settings, "plugin_host", None)
    if isinstance(value, PluginHostSettings):
        return value
    if isinstance(value, dict):
        return PluginHostSettings(**value)
    return PluginHostSettings()
