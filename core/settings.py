"""Settings: one pydantic-settings model for the whole middleware, composed of the layers' own.

Each layer owns its settings model (``aitrados.bus.settings.BusSettings``,
``aitrados.marketdata.settings.MarketDataSettings``, ``aitrados.trading.settings.TradingSettings``,
the plugin host's ``PluginHostSettings``); this module only nests them (``bus``, ``marketdata``,
``trading``, ``plugin_host``) and reads the sources. Values come, highest priority first, from keyword arguments, ``AITRADOS_*`` environment
variables (nested fields with ``__``, e.g. ``AITRADOS_BUS__HOST``), a ``.env`` file, and an
optional ``aitrados.toml`` (path overridable with ``AITRADOS_CONFIG``).
"""

from __future__ import annotations

import os
import re
import tomllib
from typing import Any

from pydantic import Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from .bus.settings import BusSettings, Transport, default_ipc_dir
from .marketdata.settings import MarketDataSettings
from .pluginhost.settings import PluginHostSettings
from .trading.settings import TradingSettings

__all__ = ["BusSettings", "Settings", "StrictTomlSource", "Transport", "config_path", "default_ipc_dir",
           "load_settings"]


class StrictTomlSource(TomlConfigSettingsSource):
    """``aitrados.toml``: a syntax error names the file; an unknown top-level section is an error.

    Environment variables stay lenient (other ``AITRADOS_*`` variables may exist), but a file
    the user wrote is checked: a misspelt ``[tradng]`` table would otherwise be silently ignored.
    """

    def _read_file(self, file_path: Any) -> dict[str, Any]:
        try:
            data = super()._read_file(file_path)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{file_path}: not valid TOML: {exc}") from None
        known = set(Settings.model_fields)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{file_path}: unknown setting(s) or section(s) {', '.join(unknown)}; "
                             f"known: {', '.join(sorted(known))}")
        return data


def config_path() -> str:
    """The TOML settings file in use: ``$AITRADOS_CONFIG``, else ``aitrados.toml`` in the current folder."""
    return os.environ.get("AITRADOS_CONFIG", "aitrados.toml")


class Settings(BaseSettings):
    """The effective configuration of one middleware (and its clients)."""

    model_config = SettingsConfigDict(
        env_prefix="AITRADOS_",
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    log_level: str = Field("INFO", description="loguru level: DEBUG shows addresses and registrations")
    secret_key: SecretStr | None = Field(None, description="AiTrados cloud API key; never logged")
    bus: BusSettings = Field(default_factory=BusSettings)
    marketdata: MarketDataSettings = Field(default_factory=MarketDataSettings)
    trading: TradingSettings = Field(default_factory=TradingSettings)
    plugin_host: PluginHostSettings = Field(default_factory=PluginHostSettings)
    plugins: dict[str, Any] = Field(default_factory=dict, description="per-plugin settings, by plugin name")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            dotenv_settings,
            StrictTomlSource(settings_cls, toml_file=config_path()),
            file_secret_settings,
        )

    def masked(self) -> dict[str, Any]:
        """The settings as plain data with every secret replaced by ``'**********'``.

        ``SecretStr`` fields dump masked; so does every other value (plugin settings included)
        whose key names a secret (``secret``, ``token``, ``password``, ``api_key``) and holds text,
        except file and folder paths (``*_file``, ``*_dir``), which are not secrets themselves.
        """
        return _mask(self.model_dump(mode="json"))


#: Key names whose values are secrets wherever they appear in the settings: a whole word of the
#: snake_case name (``control_token``, ``replay_secret_key``, ``api_key``), so that counts such
#: as ``max_tokens`` stay readable.
_SECRET_NAME = re.compile(r"(^|_)(secret|token|password|passwd|api_?key|apikey|credentials?)(_|$)", re.IGNORECASE)
_MASK = "**********"


def _mask(value: Any, key: str = "") -> Any:
    """*value* with every secret-named entry replaced by the mask (recursively)."""
    if isinstance(value, dict):
        return {k: _mask(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v, key) for v in value]
    # numbers and flags are never secrets (``max_tokens`` is a count, not a token)
    if isinstance(value, str) and _SECRET_NAME.search(key) and not key.endswith(("_file", "_dir", "_files")):
        return _MASK
    return value


def load_settings(**overrides: Any) -> Settings:
    """Build the effective settings; keyword arguments win over every other source."""
    return Settings(**overrides)
