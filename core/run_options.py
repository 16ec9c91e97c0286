"""Command-line settings: ``--set KEY=VALUE`` for any setting, and what ``aitrados run``'s own
flags (``--data``, ``--symbol``, ``--from``, ``--to``, ``--speed``, ``--report-dir``) change.

Everything here is checked before anything starts: a bad value raises :class:`OptionError`
with a one-line message naming the flag, and the caller exits with status 2.
"""

from __future__ import annotations

import os
import re
from datetime import datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

from .errors import AitradosError
from .marketdata.loader import symbol_from_filename
from .marketdata.models import normalize_full_symbol

#: loguru's built-in levels, the values ``--log-level`` / ``log_level`` accept.
LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL")

_SPEED = re.compile(r"^\s*(?P<n>[0-9]*\.?[0-9]+)\s*(?P<unit>x|/s|bps|bars/s)?\s*$", re.IGNORECASE)


class OptionError(AitradosError, ValueError):
    """A command-line value that cannot be used (the message names the flag and says why)."""


def check_log_level(level: str) -> str:
    """The upper-cased *level*; raises :class:`OptionError` unless it is a loguru level."""
    up = (level or "").strip().upper()
    if up not in LOG_LEVELS:
        raise OptionError(f"log level {level!r} is not one of {', '.join(LOG_LEVELS)}")
    return up


def parse_speed(text: str) -> tuple[float | None, float | None]:
    """``(times_real_time, bars_per_second)`` of a ``--speed`` value; exactly one is not None.

    ``0`` = as fast as possible, ``N`` or ``Nx`` = N times real time, ``N/s`` (or ``Nbps``,
    ``N bars/s``) = about N bars of the strategies' finest interval per second.
    """
    m = _SPEED.match(text or "")
    if not m:
        raise OptionError(f"--speed {text!r}: give 0 (as fast as possible), N or Nx (N times real time) "
                          "or N/s (N bars per second)")
    n = float(m["n"])
    unit = (m["unit"] or "x").lower()
    if unit == "x":
        return n, None
    if n <= 0:
        raise OptionError(f"--speed {text!r}: bars per second must be > 0 (use --speed 0 for as fast as possible)")
    return None, n


def check_report_dir(path: str) -> str:
    """*path* once it is known to be a folder this process can write (created when missing)."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
        probe = p / f".aitrados-write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise OptionError(f"--report-dir {path!r} is not a writable folder: {exc.strerror or exc}") from None
    return str(p)


def parse_when(text: str, flag: str, end: bool = False) -> datetime:
    """A ``--from`` / ``--to`` time: ISO date or date-time, UTC when naive; a bare ``--to`` date
    includes that whole day."""
    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError:
        raise OptionError(f"{flag} {text!r} is not a date (YYYY-MM-DD) or an ISO date-time") from None
    if end and len(text.strip()) <= 10:  # a date: up to the end of that day
        t = datetime.combine(t.date(), time()) + timedelta(days=1) - timedelta(seconds=1)
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def parse_set(items: list[str], top_level: set[str], plugin_names: set[str]) -> dict[str, Any]:
    """Nested overrides from ``--set KEY=VALUE`` items.

    *KEY* is a dotted setting path (``trading.broker.initial_cash``) or starts with a plugin
    name (``sma_cross.fast`` = ``plugins.sma_cross.fast``). Values are JSON when they parse
    (numbers, true/false, lists), else strings.
    """
    import json

    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        parts = [p.strip() for p in key.split(".")]
        if not sep or not all(parts):
            raise OptionError(f"--set {item!r}: give KEY=VALUE, e.g. --set trading.broker.initial_cash=10000")
        if parts[0] not in top_level:
            if parts[0] not in plugin_names:
                raise OptionError(f"--set {item!r}: {parts[0]!r} is neither a setting ({', '.join(sorted(top_level))}) "
                                  f"nor an installed plugin ({', '.join(sorted(plugin_names)) or 'none'})")
            parts = ["plugins", *parts]
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        node = out
        for p in parts[:-1]:
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise OptionError(f"--set {item!r} conflicts with an earlier --set of {p!r}")
            node = nxt
        node[parts[-1]] = value
    return out


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """*base* with *extra* merged in (nested tables merged key by key, *extra* wins)."""
    out = dict(base)
    for k, v in extra.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def data_file(path: str, symbol: str | None) -> dict[str, Any]:
    """The ``replay_bar_files`` entry of ``--data PATH`` (symbol from ``--symbol`` or the file name).

    A file named ``ASSET_COUNTRY_SYMBOL_INTERVAL.csv`` says its symbol and interval; any other
    name is taken as a daily US stock ticker (``GOOG.csv`` = ``STOCK:US:GOOG``, ``DAY``) unless
    ``--symbol`` names it.
    """
    p = Path(path)
    if not p.is_file():
        raise OptionError(f"--data {path!r}: no such file")
    named = symbol_from_filename(p)
    interval = named[1] if named else "DAY"
    if symbol:
        fs = symbol
    elif named:
        fs = named[0]
    else:
        fs = f"STOCK:US:{p.stem}"
    try:
        fs = normalize_full_symbol(fs)
    except ValueError as exc:
        raise OptionError(f"--data {path!r}: symbol {fs!r} is not ASSET:COUNTRY:SYMBOL ({exc}); "
                          "name it with --symbol, e.g. --symbol STOCK:US:GOOG") from None
    return {"path": str(p.resolve()), "full_symbol": fs, "interval": interval}
