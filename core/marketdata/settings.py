"""Market-data settings: which provider, where it lives, replay options and retry limits.

Meant to be nested in the middleware's :class:`aitrados.settings.Settings` as ``marketdata``
(environment ``AITRADOS_MARKETDATA__PROVIDER=replay`` etc.). The secret key stays the
top-level ``AITRADOS_SECRET_KEY``; :meth:`MarketDataSettings.resolve_provider` decides
between the cloud and the replay server from it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, field_validator

CLOUD_HTTP_URL = "https://default.dataset-api.aitrados.com"
CLOUD_WS_URL = "wss://realtime.dataset-sub.aitrados.com"
CLOUD_WS_DELAYED_URL = "wss://delayed.dataset-sub.aitrados.com"

DEFAULT_REPLAY_SYMBOLS = [
    "STOCK:US:AAPL",
    "STOCK:US:TSLA",
    "CRYPTO:GLOBAL:BTCUSD",
    "FOREX:GLOBAL:EURUSD",
]


class BarFile(BaseModel):
    """A bar file whose name does not say its symbol and interval (``GOOG.csv`` rather than
    ``STOCK_US_GOOG_DAY.csv``): the path plus what it holds."""

    model_config = {"extra": "forbid"}

    path: str = Field(description="CSV or Parquet file")
    full_symbol: str | None = Field(None, description="ASSET:COUNTRY:SYMBOL of its bars (default: from the name or columns)")
    interval: str | None = Field(None, description="interval of its bars (default: from the name or an interval column)")


class MarketDataSettings(BaseModel):
    """Provider choice, endpoints, replay data and clock, and the HTTP retry budget."""

    model_config = {"extra": "forbid"}

    provider: Literal["replay", "cloud", "auto"] = Field(
        "auto", description="auto = cloud when a secret key is set, else the local replay server")
    http_base_url: str = Field(CLOUD_HTTP_URL, description="cloud HTTP root (scheme://host[:port]; /api/v2 is appended)")
    ws_url: str = Field(CLOUD_WS_URL, description="cloud WebSocket root (/ws is appended)")
    http_timeout: float = Field(30.0, gt=0, description="seconds per HTTP request")
    retry_max_attempts: int = Field(5, ge=1, le=100, description="HTTP attempts on 5xx/timeouts/connection errors")
    retry_max_total_seconds: float = Field(30.0, gt=0, description="give up retrying after this many seconds in total")
    retry_initial_backoff: float = Field(0.25, ge=0, description="first retry wait, seconds; doubles each attempt")
    retry_max_backoff: float = Field(4.0, ge=0, description="cap of one retry wait, seconds")
    ws_reconnect_initial_backoff: float = Field(0.5, ge=0, description="first WS reconnect wait, seconds")
    ws_reconnect_max_backoff: float = Field(10.0, ge=0, description="cap of one WS reconnect wait, seconds")

    replay_host: str = Field("127.0.0.1", description="replay server bind address (loopback by default)")
    replay_port: int = Field(0, ge=0, le=65535, description="replay server port; 0 picks a free one (logged)")
    replay_secret_key: str | None = Field(
        None, description="when set, the replay server requires this key (like the cloud); unset = any key")
    replay_control_token: str | None = Field(
        None, description="token for /replay/start|pause|resume when no replay_secret_key is set; "
                          "unset = a random one per server (ReplayServer.control_token)")
    replay_process: bool = Field(
        False, description="run the embedded replay server in its own process (`aitrados run`): it then no longer "
                           "shares the middleware's GIL, so the loop runs faster and the routers answer sooner")
    replay_ws_queue: int = Field(256, ge=1, description="messages queued per WebSocket connection before the "
                                                      "replay waits for that client")
    replay_ws_slow_timeout: float = Field(
        5.0, gt=0, description="seconds a WebSocket client may keep its queue full before it is disconnected "
                               "(other clients are never held up longer)")
    replay_bar_files: list[str | BarFile] = Field(
        default_factory=list, description="user CSV/Parquet bar files: paths, or {path, full_symbol, interval} "
                                          "tables for files not named ASSET_COUNTRY_SYMBOL_INTERVAL.csv "
                                          "(see docs/replay.md for columns)")
    replay_news_files: list[str] = Field(default_factory=list, description="news JSON/CSV files")
    replay_calendar_files: list[str] = Field(default_factory=list, description="economic calendar JSON/CSV files")
    replay_holiday_files: list[str] = Field(default_factory=list, description="holiday JSON/CSV files")
    replay_bundled: bool = Field(True, description="serve the bundled S&P 500 / NASDAQ daily bars and samples")
    replay_symbols: list[str] = Field(
        default_factory=lambda: list(DEFAULT_REPLAY_SYMBOLS),
        description="symbols given seeded generated 1-minute bars over the whole window; [] for a long daily replay")
    replay_generate_any: bool = Field(
        False, description="generate bars on demand for any well-formed full_symbol (no unknown-symbol errors)")
    replay_seed: int = Field(7, description="seed of the 1-minute bar generator (same seed, same bars)")
    replay_start: datetime | Literal["data_start"] | None = Field(
        None, description="replay clock start (UTC when naive), or 'data_start' = the first bar of the files; "
                          "default 2018-12-24T14:30Z, inside the bundled samples")
    replay_history_days: float = Field(5.0, ge=0, le=3650, description="days of generated bars before the clock start")
    replay_days: float = Field(3.0, gt=0, le=3650, description="days of replay after the clock start (fractions allowed)")
    replay_end: datetime | Literal["data_end"] | None = Field(
        None, description="end of the replay (UTC when naive), or 'data_end' = the last bar of the files "
                          "(2018-12-31 for the bundled daily data); overrides replay_days")
    replay_speed: float = Field(
        0.0, ge=0, description="1 = real time, N = N times faster, 0 = as fast as possible (order kept)")
    replay_autostart: Literal["immediately", "first_subscribe", "manual"] = Field(
        "first_subscribe", description="when the replay clock starts moving")
    replay_autostart_grace: float = Field(
        0.3, ge=0, le=60, description="first_subscribe: start once no subscription came in for this many "
                                      "real seconds (0 = at the first one)")
    replay_rate_limit_per_second: float | None = Field(
        None, gt=0, description="answer HTTP 429 above this many requests/s (None = unlimited)")
    replay_progress_every: float = Field(10.0, gt=0, description="seconds between replay progress log lines")

    @field_validator("replay_symbols")
    @classmethod
    def _upper_symbols(cls, v: list[str]) -> list[str]:
        for s in v:
            if s.count(":") != 2:
                raise ValueError(f"replay_symbols entry {s!r} is not ASSET:COUNTRY:SYMBOL (e.g. STOCK:US:AAPL)")
        return [s.upper() for s in v]

    def resolve_provider(self, secret_key: str | None) -> Literal["replay", "cloud"]:
        """Which provider to use: the explicit choice, else cloud with a key and replay without.

        :param secret_key: the AiTrados key (top-level ``AITRADOS_SECRET_KEY``), or ``None``
        :returns: ``"cloud"`` or ``"replay"``
        :raises ValueError: ``provider="cloud"`` without a key (says which variable to set)
        """
        if self.provider == "cloud":
            if not secret_key:
                raise ValueError("marketdata.provider=cloud needs a key: set AITRADOS_SECRET_KEY, "
                                 "or use AITRADOS_MARKETDATA__PROVIDER=replay")
            return "cloud"
        if self.provider == "replay":
            return "replay"
        return "cloud" if secret_key else "replay"
