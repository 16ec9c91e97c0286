"""Reference data of the replay server beyond bars: exchange codes, the cloud's full reference
record, option chains and corporate actions from sample files (``data/options``,
``data/corporate_actions``), each answered as of the replay clock (protocol §1.7).

Pure functions over records; the HTTP side is in :mod:`aitrados.marketdata.replay_api`.
"""

from __future__ import annotations

import datetime as dt
import json
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .models import parse_full_symbol

#: US stocks listed on the NASDAQ (the rest of the US stocks served are given XNYS).
NASDAQ = frozenset({"AAPL", "TSLA", "MSFT", "NVDA", "AMZN", "GOOGL", "GOOG", "META", "NFLX", "INTC", "CSCO",
                    "ADBE", "AMD", "QCOM", "PEP", "COST", "IXIC"})
INDICES = frozenset({"SPX", "IXIC", "DJI", "NDX", "RUT", "VIX"})


def exchange_code(full_symbol: str) -> str:
    """The ISO 10383 exchange code of a symbol (``XNAS``, ``XNYS``); ``GLOBAL`` for FX and crypto,
    the country code elsewhere (no exchange table for other countries)."""
    asset, country, symbol = parse_full_symbol(full_symbol)
    if asset == "STOCK" and country == "US":
        return "XNAS" if symbol in NASDAQ else "XNYS"
    return country


def reference_extras(full_symbol: str, price_precision: int | None, listing_date: dt.date | None) -> dict[str, Any]:
    """The reference fields beyond the session ones (protocol §1.7): ids, precisions, sizes, listing date."""
    asset, country, symbol = parse_full_symbol(full_symbol)
    ident = zlib.crc32(full_symbol.encode())
    pp = price_precision if price_precision is not None else (5 if asset == "FOREX" else 2)
    qp = {"CRYPTO": 8, "FOREX": 0}.get(asset, 0)
    return {
        "instrument_id": ident, "asset_id": zlib.crc32(f"{asset}:{symbol}".encode()), "trading_codes": [symbol],
        "is_indices": symbol in INDICES, "parent_schema_instrument_id": None,
        "contract_type": {"STOCK": "index" if symbol in INDICES else "common_stock", "CRYPTO": "spot",
                          "FOREX": "spot"}.get(asset, asset.lower()),
        "contract_value": "1", "price_precision": pp, "quantity_precision": qp,
        "min_initial_open_quantity": 10.0 ** -qp if qp else 1, "tick_size": round(10.0 ** -pp, pp),
        "lot_size": {"FOREX": 1000}.get(asset, 10.0 ** -qp if qp else 1),
        "listing_date": listing_date.isoformat() if listing_date else None,
    }


def load_records(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """The records of JSON files holding a list of objects; ``ValueError`` naming a bad file."""
    out: list[dict[str, Any]] = []
    for p in paths:
        data = json.loads(Path(p).read_text())
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise ValueError(f"{p}: expected a JSON list of records")
        out += data
    return out


def _expiry(rec: dict[str, Any]) -> dt.datetime:
    return dt.datetime.fromisoformat(rec["expiration_datetime"])


def _z(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def live_options(options: list[dict[str, Any]], underlying: str, now: dt.datetime) -> list[dict[str, Any]]:
    """Options of *underlying* (``US:AAPL`` style symbol part) not yet expired at *now*."""
    return [o for o in options if o["underlying_name"].upper() == underlying.upper() and _expiry(o) > now]


def expiration_dates(options: list[dict[str, Any]], underlying: str, now: dt.datetime) -> list[dict[str, str]]:
    """``[{expiration_date, expiration_datetime}]`` of *underlying*'s live options, nearest first."""
    seen = sorted({_expiry(o): o["expiration_date"] for o in live_options(options, underlying, now)}.items())
    return [{"expiration_date": d, "expiration_datetime": t.isoformat()} for t, d in seen]


MONEYNESS = ("in_the_money", "out_of_the_money", "at_the_money", "all")


def search_options(options: list[dict[str, Any]], underlying: str, option_type: str, moneyness: str,
                   ref_price: float, now: dt.datetime, strike: float | None = None,
                   expiration: dt.date | None = None, sort_by: str | None = None) -> list[dict[str, Any]]:
    """The live options matching the search, sorted (default: expiry, then strike)."""
    typ = option_type.lower()
    rows = [o for o in live_options(options, underlying, now) if o["option_type"] == typ]
    if strike is not None:
        rows = [o for o in rows if abs(o["strike_price"] - strike) < 1e-9]
    if expiration is not None:
        rows = [o for o in rows if o["expiration_date"] == expiration.isoformat()]
    if moneyness != "all":
        def money(o: dict[str, Any]) -> str:
            k = o["strike_price"]
            if abs(k - ref_price) <= ref_price * 0.005:
                return "at_the_money"
            itm = k < ref_price if typ == "call" else k > ref_price
            return "in_the_money" if itm else "out_of_the_money"
        rows = [o for o in rows if money(o) == moneyness]
    keys = [(p.split()[0], len(p.split()) > 1 and p.split()[1].lower() == "desc")
            for p in (sort_by or "expiration_date,strike_price").split(",") if p.strip()]
    for field, desc in reversed(keys):
        rows.sort(key=lambda o: o.get(field) if o.get(field) is not None else 0, reverse=desc)
    return rows


def group_by_expiry(rows: list[dict[str, Any]]) -> tuple[list[str], dict[str, list[dict[str, Any]]]]:
    """``(expiration_datetimes, {exp: [option...]})`` with the cloud's ``Z`` keys."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for o in rows:
        groups.setdefault(_z(_expiry(o)), []).append(o)
    return list(groups), groups


def corporate_actions(actions: list[dict[str, Any]], symbol: str, now: dt.datetime, first: dt.date,
                      last: dt.date | None, action_type: str | None) -> list[dict[str, Any]]:
    """Actions of *symbol* declared by *now* with ``ex_date`` in ``[first, last]``, oldest first."""
    def keep(a: dict[str, Any]) -> bool:
        ex = dt.date.fromisoformat(a["ex_date"])
        return (a["symbol"].upper() == symbol.upper() and dt.date.fromisoformat(a["declaration_date"]) <= now.date()
                and first <= ex and (last is None or ex <= last)
                and (action_type is None or a["action_type"] == action_type))
    return sorted((a for a in actions if keep(a)), key=lambda a: a["ex_date"])
