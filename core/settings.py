"""Settings: one pydantic-settings model for the whole middleware.

Values come, highest priority first, from keyword arguments, ``AITRADOS_*`` environment
variables (nested fields with ``__``, e.g. ``AITRADOS_BUS__HOST``), a ``.env`` file, and an
optional ``aitrados.toml`` (path overridable with ``AITRADOS_CONFIG``).
"""

from __future__ import annotations

import os
import re
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
    rpc_frontend_port: int = Field(51691, description="tcp port clients connect to (0 = pick a free one)")
    rpc_backend_port: int = Field(51692, description="tcp port services connect to (0 = pick a free one)")
    sub_port: int = Field(51693, description="tcp port publishers connect to (router XSUB side)")
    pub_port: int = Field(51694, description="tcp port subscribers connect to (router XPUB side)")
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
    max_publish_size: int = Field(64 * 1024, ge=1, description="bytes; largest pub/sub message body: Publisher refuses "
                                  "larger ones, the router disconnects a remote publisher that sends one")
    subscriber_queue_bytes: int = Field(1024 * 1024 * 1024, ge=1, description="bytes the pub/sub router queues at most for "
                                        "one subscriber that does not read (its high-water mark is this ÷ max_publish_size)")
    count_all_topics: bool = Field(True, description="the pub/sub router subscribes to every topic, so `status` counts "
                                                     "topics nobody subscribes to (publishers send it everything)")
    topic_stats_max: int = Field(10_000, ge=1, description="most topics the pub/sub router keeps statistics for")
    topic_stats_ttl: float = Field(300.0, gt=0, description="seconds after which a silent topic's statistics are dropped")
    curve_secret_key_file: str | None = Field(None, description="router's CURVE secret certificate (server.key_secret from `aitrados keygen`)")
    curve_public_key_file: str | None = Field(None, description="router's CURVE public certificate (server.key), given to clients")
    curve_client_secret_key_file: str | None = Field(None, description="this client's CURVE secret certificate (client.key_secret)")
    curve_authorized_dir: str | None = Field(None, description="folder of client public certificates allowed to connect; unset = the `authorized` folder beside the server key (made by `aitrados keygen`)")
    curve_allow_any_client: bool = Field(False, description="accept any client key that knows the server key (no allow-list); off by default")


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
