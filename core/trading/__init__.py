"""Trading: strategy runtime, incremental indicators, risk engine, paper broker, reports and the LLM client.

Pure logic, no sockets: the host feeds :class:`TradingEngine` (``handle(kind, payload)``) with
bars, snapshots, news and calendar events and publishes the events it returns (``order.*``, ``fill.*``,
``position.*``). See docs/trading.md.

The names below load their module on first use, so ``import aitrados.trading.settings`` loads
the settings alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:
    from .broker import BrokerSettings, EquityPoint, PaperBroker
    from .driver import StrategyDriver
    from .engine import TradingEngine
    from .orders import Account, Event, Fill, Order, OrderIntent, Position
    from .report import Metrics, Report, Trade, build_report
    from .risk import RiskContext, RiskDecision, RiskEngine, RiskLimits
    from .strategy import Strategy, StrategyContext, StrategyNeeds

_EXPORTS = {
    **dict.fromkeys(["EquityPoint", "PaperBroker"], "broker"),
    **dict.fromkeys(["BrokerSettings", "RiskLimits"], "settings"),
    "StrategyDriver": "driver",
    "TradingEngine": "engine",
    **dict.fromkeys(["Account", "Event", "Fill", "Order", "OrderIntent", "Position"], "orders"),
    **dict.fromkeys(["Metrics", "Report", "Trade", "build_report"], "report"),
    **dict.fromkeys(["RiskContext", "RiskDecision", "RiskEngine"], "risk"),
    **dict.fromkeys(["Strategy", "StrategyContext", "StrategyNeeds"], "strategy"),
}
__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)

__all__ = [
    "Account",
    "BrokerSettings",
    "EquityPoint",
    "Event",
    "Fill",
    "Metrics",
    "Order",
    "OrderIntent",
    "PaperBroker",
    "Position",
    "Report",
    "RiskContext",
    "RiskDecision",
    "RiskEngine",
    "RiskLimits",
    "Strategy",
    "StrategyContext",
    "StrategyDriver",
    "StrategyNeeds",
    "Trade",
    "TradingEngine",
    "build_report",
]
