"""Hook specifications of the aitrados plugin host (pluggy project ``aitrados``).

A plugin implements any of these with ``from aitrados import hookimpl``. Names come from a
fixed set of verbs:

- ``register_*(register)``: contributions. The host passes a ``register`` callback; the
  plugin calls it once per thing it contributes. The host validates, rejects duplicates
  and names the plugin in every error.
- ``on_*``: notifications. Every implementation gets the event; one that raises is logged
  with its plugin's name and counted, and the others still run.
- ``check_*``: decisions. Stops at the first non-None result; an implementation that raises
  decides too (for orders: rejected — fail closed).

Any implementation may be ``async def``: the host awaits it.

The annotations name what the host passes; the types are imported for type checkers only, so
importing this module loads none of the bus, market-data or trading code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from pydantic import BaseModel

    from ..bus.service import Service
    from ..marketdata.models import Bar, CalendarEvent, NewsItem
    from ..signals.record import Signal
    from ..trading.orders import Order
    from ..trading.risk import RiskContext
    from ..trading.strategy import Strategy
    from .host import HostContext
    from .order_check import OrderCheck

#: A published message as the bus delivers it (a map of its fields).
Published = Mapping[str, Any]

#: Marker for hook specifications (pluggy project name ``aitrados``).
hookspec = pluggy.HookspecMarker("aitrados")

# ------------------------------------------------------------------ lifecycle


@hookspec
def on_startup(host: HostContext) -> None:
    """The host has loaded every plugin and connected to the bus; events follow.

    :param host: the ``HostContext``: ``settings``, ``plugin_settings(name)``, ``rpc``
        (an ``RPCClient``), ``publish(topic, obj)``, ``services``, ``llm_models``,
        ``check_order(order, context)`` and ``in_worker`` (True in an isolated process).
    :returns: nothing.
    """


@hookspec
def on_shutdown(host: HostContext) -> None:
    """The host is stopping: release what ``on_startup`` acquired. No events follow.

    :param host: the same ``HostContext`` that ``on_startup`` got.
    :returns: nothing.
    """


# ------------------------------------------------------------------ settings, services, commands


@hookspec
def register_settings(register: Callable[[type[BaseModel]], None]) -> None:
    """Declare this plugin's settings model.

    Call ``register(Model)`` with a pydantic ``BaseModel`` subclass whose config has
    ``extra="forbid"``. The host validates ``settings.plugins[<plugin name>]`` against it at
    load time, before the plugin's other ``register_*`` hooks run (they find the result in
    ``register.settings``); later read it with ``host.plugin_settings(<plugin name>)``.

    :param register: ``register(model: type[pydantic.BaseModel]) -> None``.
    :returns: nothing.
    """


@hookspec
def register_services(register: Callable[[Service], None]) -> None:
    """Contribute RPC services to the bus.

    Call ``register(service)`` with an ``aitrados.bus.Service`` instance; the host serves it
    under ``service.name`` (from the plugin's worker process when the plugin is isolated).

    :param register: ``register(service: aitrados.bus.Service) -> None``.
    :returns: nothing.
    """


@hookspec
def register_commands(register: Callable[..., None]) -> None:
    """Contribute subcommands to the ``aitrados`` command line.

    Call ``register(name, handler, help="", configure=None)``: ``handler(args, settings)``
    returns the exit code; ``configure(parser)`` adds the command's arguments.

    :param register: ``register(name: str, handler, help: str = "", configure=None) -> None``.
    :returns: nothing.
    """


@hookspec
def register_providers(register: Callable[[str, Any], None]) -> None:
    """Contribute market-data providers (history and live bars, news, calendar).

    :param register: ``register(name: str, provider: Any) -> None``; *provider* is the
        provider object or a factory the market-data layer knows how to use.
    :returns: nothing.
    """


# ------------------------------------------------------------------ strategies


@hookspec
def register_strategies(register: Callable[[Strategy], None]) -> None:
    """Contribute trading strategies to the trading runtime.

    Call ``register(strategy)`` with an ``aitrados.trading.Strategy`` instance; its
    ``strategy_name`` must be unique among all loaded plugins. ``register.settings`` holds
    this plugin's validated settings (``register_settings`` runs first), so the strategy can
    be built from them. In-process strategies are run by the middleware's trading engine;
    an isolated plugin's strategies run in its worker and trade over RPC against the same
    account.

    :param register: ``register(strategy: aitrados.trading.Strategy) -> None``.
    :returns: nothing.
    """


# ------------------------------------------------------------------ OHLC


@hookspec
def on_bar(bar: Bar | Published) -> None:
    """A bar of one symbol and interval was updated (topic ``ohlc.<full_symbol>.<interval>``).

    :param bar: an ``aitrados.marketdata.models.Bar`` (``closed`` is False while it forms);
        the published mapping when the message is not a bar.
    :returns: nothing.
    """


@hookspec
def on_chart(full_symbol: str, interval: str, window: Published) -> None:
    """A chart window changed (topic ``chart.<full_symbol>.<interval>``).

    :param full_symbol: ``ASSET:COUNTRY:SYMBOL``, e.g. ``STOCK:US:SPY``.
    :param interval: one of ``1M ... DAY WEEK MON``.
    :param window: the published window update, as sent by the chart flow manager.
    :returns: nothing.
    """


@hookspec
def on_mtf(group: str, snapshot: Published) -> None:
    """An aligned multi-symbol multi-timeframe snapshot is ready (topic ``mtf.<group>``).

    :param group: the alignment group's name.
    :param snapshot: the published snapshot: the closed bars of every member at one frontier.
    :returns: nothing.
    """


# ------------------------------------------------------------------ news and calendar


@hookspec
def on_news(item: NewsItem | Published) -> None:
    """A news item arrived (topic ``news.*``).

    :param item: an ``aitrados.marketdata.models.NewsItem``; the published mapping when the
        message is not a news item.
    :returns: nothing.
    """


@hookspec
def on_calendar_event(event: CalendarEvent | Published) -> None:
    """An economic calendar event arrived (topic ``calendar.*``).

    :param event: an ``aitrados.marketdata.models.CalendarEvent``; the published mapping
        when the message is not an event.
    :returns: nothing.
    """


# ------------------------------------------------------------------ risk


@hookspec(firstresult=True)
def check_order(order: Order | Published,
                context: RiskContext | Published | None) -> bool | str | OrderCheck | None:
    """Decide whether an order may be sent. Stops at first non-None result.

    An implementation that raises rejects the order (fail closed).

    :param order: the order intent (mapping or object: symbol, side, quantity, type, price).
    :param context: what the caller knows beside the order (positions, account, time).
    :returns: None to leave the decision to others; True to accept; False or a reason
        string to reject.
    """


@hookspec
def register_risk_rules(register: Callable[[str, Callable[[Any, Any], Any]], None]) -> None:
    """Contribute named risk rules to the risk engine.

    :param register: ``register(name: str, rule: Callable[[order, context], Any]) -> None``;
        the rule follows ``check_order``'s return convention.
    :returns: nothing.
    """


# ------------------------------------------------------------------ orders


@hookspec
def on_order(order: Published) -> None:
    """An order changed state: accepted, rejected (with rule and reason), cancelled (topic ``order.*``).

    :param order: the published order event.
    :returns: nothing.
    """


@hookspec
def on_fill(fill: Published) -> None:
    """An order was filled, fully or in part (topic ``fill.*``).

    :param fill: the published fill: order id, symbol, side, quantity, price, commission, time.
    :returns: nothing.
    """


@hookspec
def on_position(position: Published) -> None:
    """A position changed (topic ``position.*``).

    :param position: the published position: symbol, quantity, average price, PnL.
    :returns: nothing.
    """


# ------------------------------------------------------------------ LLM


@hookspec
def register_llm_models(register: Callable[[str, Any], None]) -> None:
    """Contribute LLM models that strategies can ask without knowing which one serves.

    :param register: ``register(name: str, client: Callable | Any) -> None``; *client* is a
        callable (sync or async) taking a prompt and returning text, or an object with such
        a ``complete`` method.
    :returns: nothing.
    """


# ------------------------------------------------------------------ signals


@hookspec
def on_signal(signal: Signal | Published) -> None:
    """An analysis module published a signal (topic ``signal.<module>.<full_symbol>``).

    :param signal: an ``aitrados.signals.Signal`` (module, full_symbol, time, kind, score,
        confidence, value, reason, data); the published mapping when it does not decode.
    :returns: nothing.
    """


# ------------------------------------------------------------------ MCP


@hookspec
def register_mcp_tools(register: Callable[..., None]) -> None:
    """Contribute tools to the MCP server (``aitrados mcp --plugins NAME``) that LLM agents call.

    Call ``register(fn)`` (or ``register(fn, "tool_name", description="...")``) with a plain
    or ``async`` function; its type hints are the tool's input schema (validated by the MCP
    SDK) and its return annotation the structured output. The name defaults to the function's
    and must be unique across plugins. ``register.settings`` holds this plugin's settings.

    :param register: ``register(fn: Callable, name: str | None = None, *, description: str | None = None) -> None``.
    :returns: nothing.
    """
