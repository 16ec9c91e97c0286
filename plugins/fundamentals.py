"""The ``fundamentals`` plugin: reference data and corporate actions, and bars adjusted for
splits and dividends on demand, as the RPC service ``fundamentals``.

Corporate actions come from JSON files (``corporate_action_files``; the bundled synthetic 2018
sample by default), in the AiTrados ``stock_corporate_action`` fields. Bars come from the
middleware's shared chart windows (``chart.window``), reference data from its data provider.

.. code-block:: bash

    aitrados call fundamentals adjusted_window full_symbol=STOCK:US:AAPL interval=60M size=50
    aitrados call fundamentals corporate_actions full_symbol=STOCK:US:AAPL
"""

from __future__ import annotations

from typing import Any

import msgspec
from pydantic import BaseModel, ConfigDict, Field

from aitrados import hookimpl
from aitrados.bus import Service, rpc_method
from aitrados.marketdata.corporate_actions import CorporateAction, adjust_bars, load_corporate_actions
from aitrados.marketdata.loader import bundled_data_dir
from aitrados.marketdata.models import Bar

__all__ = ["FundamentalsService", "FundamentalsSettings"]


class FundamentalsSettings(BaseModel):
    """``[plugins.fundamentals]``."""

    model_config = ConfigDict(extra="forbid")

    corporate_action_files: list[str] = Field(
        default_factory=lambda: [str(bundled_data_dir() / "fundamentals_sample" / "US_2018_synthetic_actions.json")],
        description="JSON files of corporate actions (AiTrados fields)")


class FundamentalsService(Service):
    """RPC ``fundamentals``: corporate actions, split/dividend-adjusted chart windows, reference data."""

    name = "fundamentals"

    def __init__(self, actions: list[CorporateAction]) -> None:
        self.actions = actions
        self.host: Any = None

    def corporate_actions(self, full_symbol: str, action_type: str | None = None) -> list[CorporateAction]:
        """The known splits and dividends of *full_symbol* (optionally one type), by ex-date."""
        if action_type not in (None, "split", "dividend"):
            raise ValueError(f"action_type {action_type!r}: use split or dividend")
        fs = full_symbol.upper()
        return [a for a in self.actions if a.full_symbol == fs and action_type in (None, a.action_type)]

    @rpc_method(blocking=True)
    def adjusted_window(self, full_symbol: str, interval: str, size: int | None = None, splits: bool = True,
                        dividends: bool = True, closed_only: bool = False) -> list[Bar]:
        """The chart window of *full_symbol* back-adjusted for its splits and/or dividends (oldest first)."""
        raw = self._rpc().call("chart", "window", full_symbol=full_symbol, interval=interval, size=size,
                               closed_only=closed_only)
        bars = [msgspec.convert(b, Bar) if not isinstance(b, Bar) else b for b in raw]
        return adjust_bars(bars, self.actions, splits=splits, dividends=dividends)

    @rpc_method(blocking=True)
    def reference(self, full_symbol: str) -> dict[str, Any]:
        """Reference data of *full_symbol* from the middleware's data provider (name, exchange, sessions...)."""
        from aitrados.marketdata.http_client import AitradosHTTPClient

        url = self._rpc().call("chart", "provider")["http_url"]
        key = self.host.settings.secret_key if self.host is not None else None
        with AitradosHTTPClient(url, key.get_secret_value() if key else "local-replay") as http:
            return http.reference(full_symbol.upper())

    def _rpc(self) -> Any:
        if self.host is None:
            raise RuntimeError("the fundamentals plugin has not started (no host)")
        return self.host.rpc


SERVICE = FundamentalsService([])


@hookimpl
def register_settings(register: Any) -> None:
    """Declare ``[plugins.fundamentals]``."""
    register(FundamentalsSettings)


@hookimpl
def register_services(register: Any) -> None:
    """Load the corporate-action files and serve ``fundamentals``."""
    cfg: FundamentalsSettings = register.settings or FundamentalsSettings()
    SERVICE.actions = sorted((a for f in cfg.corporate_action_files for a in load_corporate_actions(f)),
                             key=lambda a: a.ex_date)
    register(SERVICE)


@hookimpl
def on_startup(host: Any) -> None:
    """Keep the host: the service reaches the chart windows through its RPC client."""
    SERVICE.host = host
