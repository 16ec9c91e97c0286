"""Trading: strategy runtime, incremental indicators, risk engine, paper broker, reports and the LLM client.

Pure logic, no sockets: the host feeds :class:`TradingEngine` (``handle(kind, payload)``) with
bars, snapshots, news and calendar events and publishes the events it returns (``order.*``, ``fill.*``,
``position.*``). See docs/trading.md.
"""

from .broker import BrokerSettings, EquityPoint, PaperBroker
from .driver import StrategyDriver
from .engine import TradingEngine
from .orders import Account, Event, Fill, Order, OrderIntent, Position
from .report import Metrics, Report, Trade, build_report
from .risk import RiskContext, RiskDecision, RiskEngine, RiskLimits
from .strategy import Strategy, StrategyContext, StrategyNeeds

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
