"""Settings: one pydantic-settings model for the whole middleware.

Values come, highest priority first, from keyword arguments, ``AITRADOS_*`` environment
variables (nested fields with ``__``, e.g. ``AITRADOS_BUS__HOST``), a ``.env`` file, and an
optional ``aitrados.toml`` (path overridable with ``AITRADOS_CONFIG``).
"""

from __future__ import annotations

import os
import tempfile
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from .marketdata.settings import MarketDataSettings
from .plugin_settings import PluginHostSettings
from .trading.settings import TradingSettings

Transport = Literal["auto", "inproc", "ipc", "tcp"]


def default_ipc_dir() -> str:
    """Per-user folder for the routers' ipc files (``/tmp/aitrados-<uid>``)."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return str(Path(tempfile.gettempdir()) / f"aitrados-{uid}")


class BusSettings(BaseModel):
    """Addresses, limits and timings of the RPC and pub/sub routers."""

    model_config = {"extra": "forbid"}

    host: str = Field("127.0.0.1", description="tcp bind/connect host; beyond loopback needs CURVE keys")
    rpc_frontend_port: int = Field(51591, description="tcp port clients connect to (0 = pick a free one)")
    rpc_backend_port: int = Field(51592, description="tcp port services connect to (0 = pick a free one)")
    sub_port: int = Field(51593, description="tcp port publishers connect to (router XSUB side)")
    pub_port: int = Field(51594, description="tcp port subscribers connect to (router XPUB side)")
    ipc_dir: str = Field(default_factory=default_ipc_dir, description="folder of the ipc endpoint files")
    name: str = Field("default", description="instance name: inproc and ipc endpoints are named after it")
    transport: Transport = Field("auto", description="peer transport; auto = inproc in-process, ipc on this host, tcp otherwise")
    enable_tcp: bool = True
    enable_ipc: bool = True
    heartbeat_interval: float = Field(1.0, gt=0, description="seconds between heartbeats, both ways")
    heartbeat_liveness: int = Field(3, ge=1, description="missed heartbeats before a peer is declared dead")
    rpc_timeout: float = Field(10.0, gt=0, description="default client-side timeout of one RPC call, seconds")
    max_message_size: int = Field(16 * 1024 * 1024, description="bytes; larger messages are dropped by the routers (ZMQ_MAXMSGSIZE)")
    hwm: int = Field(100_000, description="send/receive high-water mark (messages) of the router sockets")
    max_inflight_per_client: int = Field(1000, ge=1, description="requests one client may have in flight at the RPC router; more are answered TooManyRequests")
    peer_refusal_limit: int = Field(1000, ge=1, description="messages in a row a peer may leave untaken (its queue full) before the RPC router cuts it off")
    peer_cutoff_seconds: float = Field(10.0, gt=0, description="how long a cut-off peer's messages are discarded (a cut-off worker is unregistered)")
    service_token_file: str | None = Field(None, description="file holding the middleware's service token (default <ipc_dir>/<name>-service.token); workers prove with it that they may serve")
    curve_secret_key_file: str | None = Field(None, description="router's CURVE secret certificate (server.key_secret from `aitrados keygen`)")
    curve_public_key_file: str | None = Field(None, description="router's CURVE public certificate (server.key), given to clients")
    curve_client_secret_key_file: str | None = Field(None, description="this client's CURVE secret certificate (client.key_secret)")
    curve_authorized_dir: str | None = Field(None, description="folder of client public certificates allowed to connect; unset = any client that knows the server key")


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
        """The settings as plain data with every secret replaced by ``'**********'``."""
        return self.model_dump(mode="json")  # SecretStr dumps as '**********'


def load_settings(**overrides: Any) -> Settings:
    """Build the effective settings; keyword arguments win over every other source."""
    return Settings(**overrides)
