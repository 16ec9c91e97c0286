"""What the dashboard shows, folded from bus messages and status polls, with no I/O.

:class:`DashboardState` takes bus messages (``ohlc.*`` bars, ``fill.*``, ``order.*``,
``news.*``, ``calendar.*``, ``replay.*``) and status snapshots (RPC answers), keeps bounded
histories of each, and hands out either a full ``snapshot()`` (a page that just connected)
or a ``take_delta()`` of what changed since the last one. The server calls ``take_delta()``
at a frame rate, so however fast a replay runs, a page gets at most one message per frame
with each changed candle once (coalesced).
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
from collections import deque
from collections.abc import Mapping
from typing import Any

__all__ = ["DashboardState", "epoch", "jsonable"]


def epoch(v: Any) -> float | None:
    """Seconds since 1970 (UTC) of a datetime, an ISO string or a number; None when it is none of them."""
    if isinstance(v, dt.datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=dt.timezone.utc)
        return v.timestamp()
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if isinstance(v, str):
        try:
            return epoch(dt.datetime.fromisoformat(v.replace("Z", "+00:00")))
        except ValueError:
            return None
    return None


def jsonable(obj: Any) -> Any:
    """*obj* with datetimes as ISO strings, bytes as hex and non-finite floats as None (for JSON)."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (dt.datetime, dt.date)):
        return obj.isoformat()
    if isinstance(obj, bytes):
        return obj.hex()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if hasattr(obj, "__struct_fields__"):
        return {f: jsonable(getattr(obj, f)) for f in obj.__struct_fields__}
    return obj


class _Series:
    """The candles of one (symbol, interval), by open time, at most *cap* of them."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.times: list[float] = []
        self.candles: dict[float, dict[str, float]] = {}
        self.closed = 0

    def put(self, t: float, candle: dict[str, float]) -> bool:
        """Store *candle* at open time *t*; False when it is older than the kept window (ignored)."""
        if t not in self.candles:
            if self.times and t < self.times[0] and len(self.times) >= self.cap:
                return False
            bisect.insort(self.times, t)
            if len(self.times) > self.cap:
                del self.candles[self.times.pop(0)]
        self.candles[t] = candle
        return True

    def time_at(self, t: float) -> float | None:
        """Open time of the candle holding instant *t* (the last one opened at or before it)."""
        i = bisect.bisect_right(self.times, t) - 1
        return self.times[i] if i >= 0 else None


class DashboardState:
    """Bounded, coalescing model of a running middleware for the dashboard page.

    :param max_candles: candles kept per (symbol, interval)
    :param max_items: fills, orders, news and calendar events kept (each)
    :param max_equity: equity points kept
    """

    def __init__(self, max_candles: int = 2000, max_items: int = 200, max_equity: int = 5000) -> None:
        self.max_candles = max_candles
        self.series: dict[str, _Series] = {}
        self.fills: deque[dict[str, Any]] = deque(maxlen=max_items)
        self.news: deque[dict[str, Any]] = deque(maxlen=max_items)
        self.calendar: deque[dict[str, Any]] = deque(maxlen=max_items)
        self.equity: deque[dict[str, float]] = deque(maxlen=max_equity)
        self.peak: float | None = None
        self.clock: dict[str, Any] = {"step": 0, "time": None, "ended": False}
        self.status: dict[str, Any] = {}
        self.counts: dict[str, int] = {"messages": 0, "fills": 0, "orders": 0, "bars": 0, "ignored": 0}
        self.order_status: dict[str, int] = {}
        # equity marked to market from the bus: initial cash (from the account poll) + cash flow of
        # fills + positions at the last close; one point per closed bar time
        self.initial_cash: float | None = None
        self.cash_flow = 0.0
        self.holdings: dict[str, float] = {}
        self.last_close: dict[str, float] = {}
        self._unpriced: deque[tuple[float, float]] = deque(maxlen=max_equity)  # (time, pnl) before the cash is known
        self._dirty_candles: dict[str, dict[float, dict[str, float]]] = {}
        self._new: dict[str, list[dict[str, Any]]] = {"fills": [], "news": [], "calendar": [], "equity": []}
        self._dirty: set[str] = set()

    # ------------------------------------------------------------------ inputs
    def feed(self, topic: str, data: Any) -> None:
        """Fold one bus message (*topic*, decoded *data*) in; unknown or malformed ones are counted and ignored."""
        self.counts["messages"] += 1
        kind = topic.split(".", 1)[0]
        try:
            if kind == "ohlc":
                self._bar(data)
            elif kind == "fill":
                self._fill(data)
            elif kind == "order":
                st = str(data.get("status", "?"))
                self.order_status[st] = self.order_status.get(st, 0) + 1
                self.counts["orders"] += 1
                self._dirty.add("orders")
            elif kind == "news":
                self._item("news", {"time": epoch(data.get("published_date")), "title": str(data.get("title", "")),
                                    "symbol": data.get("full_symbol") or "", "publisher": data.get("publisher", "")})
            elif kind == "calendar":
                self._item("calendar", {"time": epoch(data.get("event_timestamp")),
                                        "title": str(data.get("event_name") or data.get("event_code") or ""),
                                        "country": data.get("country_iso_code", ""),
                                        "impact": data.get("impact"), "actual": data.get("actual_value"),
                                        "forecast": data.get("forecast_value")})
            elif topic == "replay.step":
                self.clock = {"step": int(data.get("step", 0)), "time": epoch(data.get("time")), "ended": False}
                self._dirty.add("clock")
            elif topic == "replay.end":
                self.clock = {**self.clock, "ended": True}
                self._dirty.add("clock")
            else:
                self.counts["ignored"] += 1
        except (AttributeError, TypeError, ValueError, KeyError):
            self.counts["ignored"] += 1

    def _bar(self, b: Mapping[str, Any]) -> None:
        t = epoch(b["datetime"])
        if t is None:
            raise ValueError("bar without a datetime")
        key = f"{b['full_symbol']} {b['interval']}"
        candle = {"time": t, "open": float(b["open"]), "high": float(b["high"]), "low": float(b["low"]),
                  "close": float(b["close"])}
        if not all(math.isfinite(v) for v in candle.values()):
            raise ValueError("a bar with a non-finite price")
        s = self.series.get(key)
        if s is None:
            s = self.series[key] = _Series(self.max_candles)
        if s.put(t, candle):
            if b.get("closed", True):
                s.closed += 1
            self.counts["bars"] += 1
            self._dirty_candles.setdefault(key, {})[t] = candle
        if b.get("closed", True):
            self.last_close[str(b["full_symbol"])] = candle["close"]
            self._mark(epoch(b.get("close_datetime")) or t)

    def _fill(self, f: Mapping[str, Any]) -> None:
        t = epoch(f["datetime"])
        sym = str(f["full_symbol"])
        marks = {}
        for key, s in self.series.items():
            if key.split(" ", 1)[0] == sym:
                marks[key] = s.time_at(t) if t is not None else None
        item = {"time": t, "symbol": sym, "side": str(f["side"]), "quantity": float(f["quantity"]),
                "price": float(f["price"]), "strategy": f.get("strategy", ""), "order_id": f.get("order_id"),
                "bar_time": marks}
        if not (math.isfinite(item["quantity"]) and math.isfinite(item["price"])):
            raise ValueError("a fill with a non-finite price or quantity")
        self.counts["fills"] += 1
        self._item("fills", item)
        signed = item["quantity"] if item["side"] == "buy" else -item["quantity"]
        self.cash_flow -= signed * item["price"] + float(f.get("commission") or 0.0)
        self.holdings[sym] = self.holdings.get(sym, 0.0) + signed

    def equity_now(self) -> float | None:
        """Equity from the bus: initial cash + cash flow of fills + holdings at their last close (None before the cash is known)."""
        if self.initial_cash is None:
            return None
        return self.initial_cash + self.cash_flow + sum(q * self.last_close.get(s, 0.0) for s, q in self.holdings.items())

    def _mark(self, t: float) -> None:
        pnl = self.cash_flow + sum(q * self.last_close.get(s, 0.0) for s, q in self.holdings.items())
        if not math.isfinite(pnl):
            return
        if self.initial_cash is None:
            self._unpriced.append((t, pnl))
            return
        self._point(t, self.initial_cash + pnl)

    def _point(self, t: float, eq: float) -> None:
        if self.equity and self.equity[-1]["time"] >= t:
            if self.equity[-1]["time"] == t:
                self.equity[-1]["equity"] = eq
                self.peak = eq if self.peak is None else max(self.peak, eq)
                self.equity[-1]["drawdown"] = 0.0 if not self.peak else max(0.0, 1.0 - eq / self.peak)
            return
        self.peak = eq if self.peak is None else max(self.peak, eq)
        pt = {"time": t, "equity": eq, "drawdown": 0.0 if not self.peak else max(0.0, 1.0 - eq / self.peak)}
        self.equity.append(pt)
        self._new["equity"].append(pt)

    def _item(self, name: str, item: dict[str, Any]) -> None:
        getattr(self, name).append(item)
        self._new[name].append(item)

    def set_status(self, status: dict[str, Any]) -> None:
        """Replace the polled status (account, positions, orders, risk, services, topics, plugins, strategies)."""
        self.status = status
        self._dirty.add("status")
        cash = (status.get("account") or {}).get("initial_cash")
        if self.initial_cash is None and isinstance(cash, (int, float)) and math.isfinite(cash):
            self.initial_cash = float(cash)
            for t, pnl in self._unpriced:
                self._point(t, self.initial_cash + pnl)
            self._unpriced.clear()

    # ------------------------------------------------------------------ outputs
    def _charts(self, only: Mapping[str, Mapping[float, dict[str, float]]] | None = None) -> dict[str, Any]:
        out = {}
        for key, s in self.series.items():
            if only is None:
                candles = [s.candles[t] for t in s.times]
            elif key in only:
                candles = [c for t, c in sorted(only[key].items()) if t in s.candles]
            else:
                continue
            out[key] = {"candles": candles, "count": len(s.times), "closed": s.closed}
        return out

    def _head(self) -> dict[str, Any]:
        return {"clock": self.clock, "counts": dict(self.counts), "order_status": dict(self.order_status)}

    def snapshot(self) -> dict[str, Any]:
        """Everything kept, for a page that just connected (``type`` = ``snapshot``); clears nothing."""
        return {"type": "snapshot", **self._head(), "charts": self._charts(), "fills": list(self.fills),
                "news": list(self.news), "calendar": list(self.calendar), "equity": list(self.equity),
                "status": self.status}

    def take_delta(self) -> dict[str, Any] | None:
        """What changed since the last call (``type`` = ``delta``), or None when nothing did."""
        if not (self._dirty_candles or self._dirty or any(self._new.values())):
            return None
        out: dict[str, Any] = {"type": "delta", **self._head(), "charts": self._charts(self._dirty_candles)}
        for name, items in self._new.items():
            if items:
                out[name] = items
        if "status" in self._dirty:
            out["status"] = self.status
        self._dirty_candles = {}
        self._new = {k: [] for k in self._new}
        self._dirty = set()
        return out
