"""The official ``aitrados_api`` backend's functions, answered from our middleware's instances.

Data functions go through the native ``http`` service (the middleware's one shared HTTP client),
chart-flow functions through the native ``chart`` service, multi-timeframe functions through
``mtf``. Each answer is the official ``UnifiedResponse``/``ErrorResponse`` JSON.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from . import frames as F
from .formats import format_rows

#: Native RPC: ``await call(service, method, **params)``.
NativeCall = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class Route:
    """One official data function: its URL template and its parameters in the official order."""

    path: str
    params: tuple[str, ...]
    defaults: tuple[tuple[str, Any], ...] = ()


#: Official function name -> route (paths and parameter orders of aitrados-api 0.2.0).
DATA_ROUTES: dict[str, Route] = {
    "ohlc.a_ohlcs_latest": Route("{schema_asset}/bars/{country_symbol}/{interval}/latest",
                                 ("schema_asset", "country_symbol", "interval", "format", "limit", "is_eth"),
                                 (("format", "csv"), ("limit", 150), ("is_eth", False))),
    "ohlc.a_ohlcs": Route("{schema_asset}/bars/{country_symbol}/{interval}/from/{from_date}/to/{to_date}",
                          ("schema_asset", "country_symbol", "interval", "from_date", "to_date", "format", "limit",
                           "sort", "is_eth", "next_page_key"),
                          (("format", "csv"), ("limit", 150), ("is_eth", False))),
    "reference.a_reference": Route("{schema_asset}/reference/{country_symbol}", ("schema_asset", "country_symbol")),
    "reference.a_search_option": Route(
        "option/search/{schema_asset}/{country_symbol}/{option_type}/moneyness/{moneyness}",
        ("schema_asset", "country_symbol", "option_type", "moneyness", "ref_asset_price", "strike_price",
         "expiration_date", "limit", "sort_by", "next_page_key"), (("limit", 100),)),
    "reference.a_options_expiration_date_list": Route("option/expiration_date_list/{schema_asset}/{country_symbol}",
                                                      ("schema_asset", "country_symbol")),
    "reference.a_stock_corporate_action_list": Route(
        "stock/stock_corporate_action/list/{country_symbol}",
        ("country_symbol", "from_date", "action_type", "to_date", "format", "limit", "next_page_key"),
        (("format", "json"), ("limit", 100))),
    "economic.a_event_codes": Route("economic_calendar/event_codes/{country_iso_code}", ("country_iso_code",),
                                    (("country_iso_code", "US"),)),
    "economic.a_event_list": Route("economic_calendar/event_list",
                                   ("country_iso_code", "event_code", "impact", "source_id", "from_date", "to_date",
                                    "sort", "limit", "format", "next_page_key"), (("limit", 100), ("format", "json"))),
    "economic.a_event": Route("economic_calendar/event",
                              ("country_iso_code", "event_code", "impact", "source_id", "from_date", "to_date", "sort")),
    "economic.a_latest_events": Route("economic_calendar/latest_event_list",
                                      ("country_iso_code", "event_code", "impact", "date_type", "limit", "format",
                                       "sort"), (("date_type", "upcoming"), ("limit", 5), ("format", "json"))),
    "holiday.a_holiday_list": Route("holiday/list", ("full_symbol", "from_date", "holiday_code", "to_date", "sort",
                                                     "limit", "format", "next_page_key"),
                                    (("sort", "asc"), ("limit", 100), ("format", "json"))),
    "holiday.a_holiday_codes": Route("holiday/holiday_codes/{country_iso_code}", ("country_iso_code",),
                                     (("country_iso_code", "US"),)),
    "news.a_news_list": Route("news/list", ("from_date", "to_date", "full_symbol", "sort", "limit", "format",
                                            "next_page_key"), (("sort", "asc"), ("limit", 100), ("format", "json"))),
    "news.a_news_latest": Route("news/latest", ("full_symbol", "sort", "limit"), (("limit", 5),)),
}

CHART_FUNCTIONS = ("add_latest_ohlc_chart_flow_item", "remove_latest_ohlc_chart_flow_item",
                   "add_latest_ohlc_chart_flow_item_or_get_data")
MTF_FUNCTIONS = ("add_latest_ohlc_multi_timeframe_item", "remove_latest_ohlc_multi_timeframe_item",
                 "add_latest_ohlc_multi_timeframe_item_or_get_data")
#: The official WebSocketClient functions -> (action, stream kind): the runtime's one WS session.
WS_ROUTES: dict[str, tuple[str, str | None]] = {
    "a_subscribe_ohlc_1m": ("subscribe", "ohlc"), "a_subscribe_news": ("subscribe", "news"),
    "a_subscribe_event": ("subscribe", "event"), "a_unsubscribe_ohlc_1m": ("unsubscribe", "ohlc"),
    "a_unsubscribe_news": ("unsubscribe", "news"), "a_unsubscribe_event": ("unsubscribe", "event"),
    "resubscribe_all": ("resubscribe", None), "a_get_all_subscribed_topics": ("subscriptions", None),
}
WS_FUNCTIONS = tuple(WS_ROUTES)
ALL_FUNCTIONS = (*DATA_ROUTES, *WS_FUNCTIONS, *CHART_FUNCTIONS, *MTF_FUNCTIONS)


def bind_args(names: tuple[str, ...], args: list[Any], kwargs: dict[str, Any],
              defaults: tuple[tuple[str, Any], ...] = ()) -> dict[str, Any]:
    """Map official positional and keyword arguments onto *names*; ``TypeError`` when they do not fit."""
    if len(args) > len(names):
        raise TypeError(f"takes at most {len(names)} positional arguments ({len(args)} given)")
    out: dict[str, Any] = dict(defaults)
    out.update(zip(names, args))
    for k, v in kwargs.items():
        if k not in names:
            raise TypeError(f"unexpected argument {k!r}; accepted: {', '.join(names)}")
        out[k] = v
    return out


def _text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (dt.datetime, dt.date)):
        return v.isoformat()
    return str(v)


def build_request(function_name: str, args: list[Any], kwargs: dict[str, Any]) -> tuple[str, dict[str, Any], str | None]:
    """``(path, query, page_key)`` of an official data function call."""
    route = DATA_ROUTES[function_name]
    values = bind_args(route.params, args, kwargs, route.defaults)
    path = route.path
    for name in list(values):
        token = "{" + name + "}"
        if token in path:
            value = values.pop(name)
            if value is None:
                raise TypeError(f"missing required argument {name!r}")
            path = path.replace(token, _text(value))
    if "{" in path:
        missing = path[path.index("{") + 1:path.index("}")]
        raise TypeError(f"missing required argument {missing!r}")
    page_key = values.pop("next_page_key", None)
    query = {k: _text(v) for k, v in values.items() if v is not None}
    return path, query, page_key


def _error_code(exc: BaseException) -> int:
    code = getattr(exc, "code", None) or getattr(exc, "status", None)
    return code if isinstance(code, int) else 400


async def answer(function_name: str, args: list[Any], kwargs: dict[str, Any], native: NativeCall) -> bytes:
    """The official JSON answer of ``aitrados_api.<function_name>(*args, **kwargs)``; never raises."""
    if function_name not in ALL_FUNCTIONS:
        return F.error(f"Unknown request '{function_name}'")
    try:
        if function_name in DATA_ROUTES:
            path, query, page_key = build_request(function_name, args, kwargs)
            return F.ok(await native("http", "get", path=path, params=query, page_key=page_key))
        if function_name in WS_FUNCTIONS:
            return F.ok(await _ws(function_name, args, kwargs, native))
        if function_name in CHART_FUNCTIONS:
            return F.ok(await _chart(function_name, args, kwargs, native))
        return F.ok(await _mtf(function_name, args, kwargs, native))
    except Exception as exc:  # the official backend answers every failure as an ErrorResponse
        message = getattr(exc, "message", None) or str(exc)
        return F.error(f"Error: {message}", code=_error_code(exc), detail=type(exc).__name__)


async def _ws(function_name: str, args: list[Any], kwargs: dict[str, Any], native: NativeCall) -> Any:
    """The official WebSocketClient function on the runtime's one WS session (``chart`` service).

    Answers as the official client does: ``"subscribing"`` / ``"unsubscribing"`` once sent
    (``"subscribed"`` for no topics), ``None`` for ``resubscribe_all``, the server-confirmed topics
    by kind for ``a_get_all_subscribed_topics``.
    """
    action, kind = WS_ROUTES[function_name]
    if kwargs:
        raise TypeError(f"{function_name} takes topics as positional arguments only")
    if action == "subscriptions":
        return await native("chart", "subscriptions")
    if action == "resubscribe":
        if args:
            raise TypeError("resubscribe_all takes no arguments")
        await native("chart", "resubscribe")
        return None
    if not args:
        return "subscribed"
    if not all(isinstance(t, str) and t.strip() for t in args):
        raise TypeError("topics must be non-empty strings")
    await native("chart", action, kind=kind, topics=list(args))
    return "subscribing" if action == "subscribe" else "unsubscribing"


async def _chart(function_name: str, args: list[Any], kwargs: dict[str, Any], native: NativeCall) -> Any:
    if function_name == "add_latest_ohlc_chart_flow_item_or_get_data":
        names = ("full_symbol", "interval", "is_eth", "rename_column_name_mapping", "filter_column_names", "limit",
                 "to_format")
    else:
        names = ("full_symbol", "interval", "is_eth")
    v = bind_args(names, args, kwargs)
    fs, iv = v.get("full_symbol"), v.get("interval")
    if not fs or not iv:
        raise TypeError("full_symbol and interval are required")
    if function_name == "remove_latest_ohlc_chart_flow_item":
        return await native("chart", "remove", full_symbol=fs, interval=iv)
    added = await native("chart", "add", full_symbol=fs, interval=iv)
    if function_name == "add_latest_ohlc_chart_flow_item":
        return added
    return {"full_symbol": added["full_symbol"], "interval": added["interval"],
            "data": await _window_data(native, added["full_symbol"], added["interval"], v)}


async def _window_data(native: NativeCall, fs: str, iv: str, v: dict[str, Any]) -> Any:
    """One window's bars as the official ``to_format`` asks (CSV text unless ``list``)."""
    import msgspec

    from aitrados.marketdata.models import Bar, bar_to_record

    bars = await native("chart", "window", full_symbol=fs, interval=iv)
    rows = [bar_to_record(msgspec.convert(b, Bar)) for b in bars]
    return format_rows(rows, v.get("to_format"), v.get("rename_column_name_mapping"), v.get("filter_column_names"),
                       v.get("limit"))


def _group_name(item_data: dict[str, Any]) -> str:
    parts = [f"{fs}:{'-'.join(map(str, ivs))}" for fs, ivs in sorted(item_data.items())]
    return "compat-" + "_".join(parts).replace(":", "-").replace(" ", "")[:200]


async def _mtf(function_name: str, args: list[Any], kwargs: dict[str, Any], native: NativeCall) -> Any:
    if function_name == "remove_latest_ohlc_multi_timeframe_item":
        v = bind_args(("name",), args, kwargs)
        return await native("mtf", "remove_group", name=v.get("name"))
    names = ("item_data", "is_eth", "name", "original_name")
    if function_name.endswith("_or_get_data"):
        names += ("rename_column_name_mapping", "filter_column_names", "limit", "to_format")
    v = bind_args(names, args, kwargs)
    item = v.get("item_data")
    if not isinstance(item, dict) or not item:
        raise TypeError("item_data must be a map full_symbol -> [intervals]")
    name = v.get("name") or _group_name(item)
    members = {k: list(x) for k, x in item.items()}
    groups = await native("mtf", "list_groups")
    if name in groups and groups[name] == members:  # the official add_item of a known item is a no-op
        added: Any = {"name": name, "created": False}
    else:
        added = await native("mtf", "add_group", name=name, members=members)
    if function_name == "add_latest_ohlc_multi_timeframe_item":
        return added
    group = (await native("mtf", "get_group", name=name))["members"]
    return {fs: [await _window_data(native, fs, iv, v) for iv in ivs] for fs, ivs in group.items()}
