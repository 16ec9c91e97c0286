"""The financial MCP tools and resources: market data, news, calendar, account, backtests, orders.

``add_read_tools`` and ``add_trading_tools`` put them on an ``mcp.server.MCPServer``; each tool
has typed, validated inputs (pydantic ``Field`` constraints, ``Literal`` choices) and a
structured output. They call a :class:`~aitrados.mcp.backend.Backend` off the event loop.
"""

from __future__ import annotations

import datetime as dt
import functools
import inspect
import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
import msgspec
from pydantic import BaseModel, Field

from ..marketdata.intervals import session_for
from ..trading.indicators import ATR, EMA, RSI, SMA, BollingerBands
from .backend import Backend

FullSymbol = Annotated[str, Field(pattern=r"^[A-Za-z]+:[A-Za-z]+:[A-Za-z0-9._\-]+$",
                                  description="ASSET:COUNTRY:SYMBOL, e.g. STOCK:US:SPX", max_length=64)]
Interval = Literal["1M", "3M", "5M", "10M", "15M", "30M", "60M", "120M", "240M", "DAY", "WEEK", "MON"]
Country = Annotated[str, Field(pattern=r"^[A-Za-z]{2}$", description="ISO country code, e.g. US")]
Impact = Literal["low", "medium", "high", "all"]

#: Topic every order placed by an agent is announced on (``mcp.order.<identity>``).
ORDER_TOPIC = "mcp.order"


def plain(obj: Any) -> Any:
    """*obj* as JSON-ready data (structs to dicts, datetimes to ISO strings)."""
    return msgspec.to_builtins(obj)


async def _off(fn: Any, *args: Any, **kwargs: Any) -> Any:
    return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))


def clear_errors(fn: Any) -> Any:
    """Wrap async tool *fn* so any failure reaches the agent as a tool error with its message.

    (The SDK withholds the text of unexpected exceptions; ours say what to fix.)
    """
    from mcp.server.mcpserver.exceptions import ToolError

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            result = fn(*args, **kwargs)
            return await result if inspect.isawaitable(result) else result
        except ToolError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure is reported to the caller, with its type
            raise ToolError(f"{type(exc).__name__}: {exc}") from exc

    return wrapper


def tool(server: Any, **options: Any) -> Any:
    """Decorator: add the function to *server* as a tool whose failures carry their message."""
    def deco(fn: Any) -> Any:
        server.add_tool(clear_errors(fn), **options)
        return fn
    return deco


class Bars(BaseModel):
    """Bars of one symbol and interval, oldest first."""

    full_symbol: str
    interval: str
    count: int
    bars: list[dict[str, Any]]


class Records(BaseModel):
    """A list of records (news items, calendar events, holidays, orders, positions)."""

    count: int
    items: list[dict[str, Any]]


class Snapshot(BaseModel):
    """The latest closed bar of one symbol on each interval asked for."""

    full_symbol: str
    bars: dict[str, dict[str, Any] | None]


class IndicatorValues(BaseModel):
    """Indicator values over a chart window: the latest value of each and the bar time they are at."""

    full_symbol: str
    interval: str
    bars: int
    time: str | None
    values: dict[str, float | None]


class BacktestResult(BaseModel):
    """The outcome of one backtest run: its metrics, the summary table and the exit code."""

    exit_code: int
    metrics: dict[str, Any]
    summary: str
    log_tail: str


class OrderResult(BaseModel):
    """What an agent order caused: the order events (accepted, rejected with reason, filled...)."""

    strategy: str
    accepted: bool
    events: list[dict[str, Any]]


def _bars(full_symbol: str, interval: str, bars: list[Any]) -> Bars:
    rows = [plain(b) for b in bars]
    return Bars(full_symbol=full_symbol.upper(), interval=interval, count=len(rows), bars=rows)


def _records(items: list[Any]) -> Records:
    rows = [plain(x) for x in items]
    return Records(count=len(rows), items=rows)


def indicator_values(bars: list[Any], sma: list[int], ema: list[int], rsi: int | None, bollinger: int | None,
                     atr: int | None) -> dict[str, float | None]:
    """Run the incremental indicators over *bars* (oldest first); returns the last value of each."""
    made: dict[str, Any] = {f"sma_{n}": SMA(n) for n in sma} | {f"ema_{n}": EMA(n) for n in ema}
    if rsi:
        made[f"rsi_{rsi}"] = RSI(rsi)
    out: dict[str, float | None] = {k: None for k in made}
    bb = BollingerBands(bollinger) if bollinger else None
    at = ATR(atr) if atr else None
    if bb is not None:
        out.update({f"bb_{bollinger}_{p}": None for p in ("lower", "mid", "upper")})
    if at is not None:
        out[f"atr_{atr}"] = None
    for b in bars:
        for k, ind in made.items():
            out[k] = ind.update(b.close)
        if bb is not None:
            v = bb.update(b.close)
            if v is not None:
                out.update(dict(zip((f"bb_{bollinger}_{p}" for p in ("lower", "mid", "upper")), v)))
        if at is not None:
            out[f"atr_{atr}"] = at.update(b.high, b.low, b.close)
    return out


def add_read_tools(server: Any, backend: Backend) -> None:
    """Add the read-only tools and the resources to *server* (an ``MCPServer``)."""
    from ..marketdata.models import Bar

    def window(full_symbol: str, interval: str, size: int | None, closed_only: bool = False) -> list[Bar]:
        raw = backend.call("chart", "window", full_symbol=full_symbol.upper(), interval=interval, size=size,
                           closed_only=closed_only)
        return [msgspec.convert(b, Bar) if not isinstance(b, Bar) else b for b in raw]

    @tool(server)
    async def ohlc_history(full_symbol: FullSymbol, interval: Interval, from_date: dt.datetime, to_date: dt.datetime,
                           limit: Annotated[int, Field(ge=1, le=5000)] = 500) -> Bars:
        """OHLC bars of a symbol between two times (UTC), oldest first, at most *limit*."""
        if to_date < from_date:
            raise ValueError(f"to_date {to_date} is before from_date {from_date}")
        bars = await _off(backend.fetch, "ohlc_history", full_symbol.upper(), interval, from_date, to_date,
                          limit=limit)
        return _bars(full_symbol, interval, bars[-limit:])

    @tool(server)
    async def ohlc_latest(full_symbol: FullSymbol, interval: Interval,
                          limit: Annotated[int, Field(ge=1, le=1000)] = 20) -> Bars:
        """The latest *limit* bars of a symbol from the data provider, oldest first."""
        bars = await _off(backend.fetch, "ohlc_latest", full_symbol.upper(), interval, limit=limit)
        return _bars(full_symbol, interval, bars)

    @tool(server)
    async def chart_window(full_symbol: FullSymbol, interval: Interval,
                           size: Annotated[int, Field(ge=1, le=5000)] = 50, closed_only: bool = False) -> Bars:
        """The middleware's shared rolling chart window (hydrated on first use), live bar last unless closed_only."""
        return _bars(full_symbol, interval, await _off(window, full_symbol, interval, size, closed_only))

    @tool(server)
    async def multi_timeframe_snapshot(full_symbol: FullSymbol,
                                       intervals: Annotated[list[Interval], Field(min_length=1, max_length=12)]
                                       ) -> Snapshot:
        """The latest closed bar of a symbol on each interval (no look-ahead: a bar shows once it closed)."""
        out: dict[str, dict[str, Any] | None] = {}
        for iv in dict.fromkeys(intervals):
            bars = await _off(window, full_symbol, iv, None, True)
            out[iv] = plain(bars[-1]) if bars else None
        return Snapshot(full_symbol=full_symbol.upper(), bars=out)

    @tool(server)
    async def indicators(full_symbol: FullSymbol, interval: Interval,
                         size: Annotated[int, Field(ge=2, le=5000)] = 200,
                         sma: Annotated[list[Annotated[int, Field(ge=1, le=1000)]], Field(max_length=8)] = [20],  # noqa: B006
                         ema: Annotated[list[Annotated[int, Field(ge=1, le=1000)]], Field(max_length=8)] = [],  # noqa: B006
                         rsi: Annotated[int | None, Field(ge=2, le=500)] = 14,
                         bollinger: Annotated[int | None, Field(ge=2, le=500)] = None,
                         atr: Annotated[int | None, Field(ge=1, le=500)] = None) -> IndicatorValues:
        """SMA/EMA/RSI/Bollinger/ATR over the closed bars of a chart window; the latest value of each."""
        bars = await _off(window, full_symbol, interval, size, True)
        values = indicator_values(bars, sma, ema, rsi, bollinger, atr)
        return IndicatorValues(full_symbol=full_symbol.upper(), interval=interval, bars=len(bars),
                               time=bars[-1].datetime.isoformat() if bars else None, values=values)

    @tool(server)
    async def news_latest(full_symbol: FullSymbol | None = None,
                          limit: Annotated[int, Field(ge=1, le=100)] = 5) -> Records:
        """The latest news items, for one symbol or all."""
        return _records(await _off(backend.fetch, "news_latest", full_symbol.upper() if full_symbol else None,
                                   limit=limit))

    @tool(server)
    async def news_search(from_date: dt.datetime, to_date: dt.datetime, query: Annotated[str, Field(max_length=200)] = "",
                          full_symbol: FullSymbol | None = None,
                          limit: Annotated[int, Field(ge=1, le=500)] = 50) -> Records:
        """News between two times whose title or text contains *query* (case-insensitive; empty: all)."""
        items = await _off(backend.fetch, "news_list", from_date, to_date,
                           full_symbol.upper() if full_symbol else None)
        q = query.lower()
        hits = [n for n in items if not q or q in n.title.lower() or q in (n.text_content or "").lower()]
        return _records(hits[:limit])

    @tool(server)
    async def economic_calendar(country: Country = "US", impact: Impact = "all", event_code: str | None = None,
                                from_date: dt.datetime | None = None, to_date: dt.datetime | None = None,
                                limit: Annotated[int, Field(ge=1, le=500)] = 50) -> Records:
        """Economic calendar events of a country between two times (either may be open), filtered by impact."""
        filters: dict[str, Any] = {"country_iso_code": country.upper(), "event_code": event_code,
                                   "impact": None if impact == "all" else impact}
        if from_date is not None:
            filters["from_date"] = from_date
        if to_date is not None:
            filters["to_date"] = to_date
        events = await _off(backend.fetch, "calendar_events", **filters)
        return _records(events[:limit])

    @tool(server)
    async def holidays(full_symbol: Annotated[str, Field(max_length=64)] = "stock:US:*",
                       from_date: dt.datetime | None = None, to_date: dt.datetime | None = None) -> Records:
        """Market holidays of an exchange (``stock:US:*``) between two times."""
        return _records(await _off(backend.fetch, "holidays", full_symbol, from_date=from_date, to_date=to_date))

    @tool(server)
    async def trading_session(full_symbol: FullSymbol) -> dict[str, Any]:
        """The regular trading session of a symbol: name, time zone, open and close, trading weekdays."""
        s = session_for(full_symbol.upper())
        return {"full_symbol": full_symbol.upper(), "session": s.name, "timezone": s.tz,
                "open": s.open.isoformat(), "close": s.close.isoformat(), "is_24h": s.is_24h,
                "weekdays": sorted(s.weekdays)}

    @tool(server)
    async def symbol_reference(full_symbol: FullSymbol) -> dict[str, Any]:
        """Reference data of a symbol (name, exchange, currency, ...), as the provider gives it."""
        return plain(await _off(backend.fetch, "reference", full_symbol.upper()))

    @tool(server)
    async def account() -> dict[str, Any]:
        """The paper account: cash, equity, realised and unrealised PnL."""
        return plain(await _off(backend.call, "trading", "account"))

    @tool(server)
    async def positions() -> Records:
        """Every open position of the account (all strategies)."""
        return _records(await _off(backend.call, "trading", "positions"))

    @tool(server)
    async def orders(status: Literal["accepted", "rejected", "filled", "cancelled", "all"] = "all") -> Records:
        """Orders of the account, optionally only those with one status."""
        return _records(await _off(backend.call, "trading", "orders", status=None if status == "all" else status))

    @tool(server)
    async def risk_state() -> dict[str, Any]:
        """The risk engine: kill switch, limits and counters."""
        return plain(await _off(backend.call, "trading", "risk_state"))

    @tool(server)
    async def run_backtest(plugins: Annotated[list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:]+$")]],
                                              Field(min_length=1, max_length=10)],
                           plugin_settings: dict[str, dict[str, Any]] | None = None,
                           trading: dict[str, Any] | None = None,
                           marketdata: dict[str, Any] | None = None,
                           timeout_seconds: Annotated[float, Field(gt=0, le=3600)] = 600) -> BacktestResult:
        """Replay the data through the given strategy plugins in a separate middleware; return its metrics.

        ``plugin_settings`` are per-plugin settings (``{plugin: {field: value}}``), ``trading`` and
        ``marketdata`` override those settings (e.g. ``{"risk": {"max_position": 10}}``,
        ``{"replay_bar_files": ["my.csv"]}``). The running middleware is not touched.
        """
        return await _off(run_backtest_process, plugins, plugin_settings or {}, trading or {}, marketdata or {},
                          timeout_seconds)

    @server.resource("aitrados://report", mime_type="application/json")
    async def report() -> str:
        """The running middleware's trading report: metrics, number of trades, the summary table."""
        return json.dumps(plain(await _off(backend.call, "trading", "report")))

    @server.resource("aitrados://strategies", mime_type="application/json")
    async def strategies() -> str:
        """The plugins of the running middleware with their strategies, and the services it serves."""
        services = await _off(backend.call, "middleware", "services")
        try:
            plugins = await _off(backend.call, "plugins", "status")
        except Exception as exc:  # noqa: BLE001 - a middleware without plugins serves no `plugins` service
            plugins = {"error": str(exc)}
        return json.dumps({"services": sorted(services), "plugins": plain(plugins)}, default=str)


def add_trading_tools(server: Any, backend: Backend, identity: str) -> None:
    """Add ``submit_order`` and ``cancel_order``, acting as strategy *identity* (only with ``--allow-trading``)."""

    def announce(tool: str, request: dict[str, Any], events: list[dict[str, Any]]) -> None:
        backend.publish(f"{ORDER_TOPIC}.{identity}", {"tool": tool, "strategy": identity, "request": request,
                                                      "events": events})

    @tool(server)
    async def submit_order(full_symbol: FullSymbol, side: Literal["buy", "sell"],
                           quantity: Annotated[float, Field(gt=0, le=1e9)],
                           order_type: Literal["market", "limit"] = "market",
                           limit_price: Annotated[float | None, Field(gt=0)] = None,
                           interval: Interval = "DAY") -> OrderResult:
        """Place a paper order as the agent's strategy identity; it passes the same risk checks and kill switch.

        A market order fills on the next bar of *interval*. The result lists the order events
        (``order.rejected`` carries the rule and reason).
        """
        if (order_type == "limit") != (limit_price is not None):
            raise ValueError("give limit_price exactly when order_type is 'limit'")
        intent = {"full_symbol": full_symbol.upper(), "side": side, "quantity": quantity, "order_type": order_type,
                  "limit_price": limit_price, "interval": interval, "client_id": f"mcp-{uuid.uuid4().hex[:12]}",
                  "tag": "mcp"}
        events = await _off(backend.call, "trading", "submit", strategy=identity, intent=intent)
        await _off(announce, "submit_order", intent, events)
        accepted = any(e["topic"].startswith(("order.accepted", "fill.")) for e in events)
        return OrderResult(strategy=identity, accepted=accepted, events=events)

    @tool(server)
    async def cancel_order(client_id: Annotated[str, Field(min_length=1, max_length=64)]) -> OrderResult:
        """Cancel a working order the agent placed (its ``client_id``)."""
        events = await _off(backend.call, "trading", "cancel", strategy=identity, client_id=client_id)
        await _off(announce, "cancel_order", {"client_id": client_id}, events)
        return OrderResult(strategy=identity, accepted=any(e["topic"].startswith("order.cancelled") for e in events),
                           events=events)


def run_backtest_process(plugins: list[str], plugin_settings: dict[str, Any], trading: dict[str, Any],
                         marketdata: dict[str, Any], timeout: float) -> BacktestResult:
    """Run ``aitrados run --plugins ...`` in a child middleware of its own (own bus name, free ports)."""
    with tempfile.TemporaryDirectory(prefix="at-bt-", dir="/tmp") as d:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AITRADOS_")}
        env.update({"AITRADOS_CONFIG": str(Path(d) / "none.toml"), "AITRADOS_BUS__NAME": f"bt{os.getpid()}-{uuid.uuid4().hex[:6]}",
                    "AITRADOS_BUS__IPC_DIR": d, "AITRADOS_BUS__RPC_FRONTEND_PORT": "0",
                    "AITRADOS_BUS__RPC_BACKEND_PORT": "0", "AITRADOS_BUS__SUB_PORT": "0", "AITRADOS_BUS__PUB_PORT": "0",
                    "AITRADOS_MARKETDATA__PROVIDER": "replay"})
        if plugin_settings:
            env["AITRADOS_PLUGINS"] = json.dumps(plugin_settings)
        if trading:
            env["AITRADOS_TRADING"] = json.dumps(trading)
        if marketdata:
            env["AITRADOS_MARKETDATA"] = json.dumps({"provider": "replay", **marketdata})
        report = Path(d) / "report"
        cmd = [sys.executable, "-m", "aitrados", "run", "--plugins", ",".join(plugins), "--report-dir", str(report)]
        try:
            p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=d)
        except subprocess.TimeoutExpired as exc:
            raise TimeoutError(f"the backtest did not finish within {timeout:g}s; raise timeout_seconds") from exc
        found = sorted(report.rglob("metrics.json")) if report.exists() else []  # the run's own folder inside
        metrics_file = found[0] if found else report / "metrics.json"
        if p.returncode != 0 or not metrics_file.exists():
            tail = (p.stderr or p.stdout)[-2000:]
            raise RuntimeError(f"the backtest failed (exit code {p.returncode}): {tail}")
        summary_file = metrics_file.parent / "summary.txt"
        summary = summary_file.read_text() if summary_file.exists() else ""
        return BacktestResult(exit_code=p.returncode, metrics=json.loads(metrics_file.read_text()), summary=summary,
                              log_tail=p.stderr[-1000:])


__all__ = ["ORDER_TOPIC", "clear_errors", "tool", "add_read_tools", "add_trading_tools", "indicator_values", "run_backtest_process"]
