"""The ``to_format`` of the official ``..._or_get_data`` functions: bar records as CSV text or a list.

The official backend answers ``to_format="list"`` with a list of row maps and every other value
(``csv``, ``pandas``, ``polars``, none) with CSV text, since a DataFrame cannot travel as JSON; the
official client turns that text into a DataFrame itself. Columns are renamed
(``rename_column_name_mapping``), then kept (``filter_column_names``, after renaming; unknown
names are ignored, and none known keeps all), then the last ``limit`` rows are kept. In CSV,
float columns are rounded as the official backend rounds them: 4 decimals below 10, else 2.
An empty window is ``None``, as there.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

#: The formats the official backend sends as they are; any other is sent as CSV.
SERIALIZED = ("csv", "list")


def wire_format(to_format: Any) -> str:
    """The format actually sent for a requested *to_format* (``list`` or ``csv``)."""
    return to_format if to_format in SERIALIZED else "csv"


def shape_rows(rows: Sequence[Mapping[str, Any]], rename: Mapping[str, str] | None = None,
               columns: Sequence[str] | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """*rows* renamed, filtered to *columns* and cut to the last *limit* rows (official order of steps).

    :raises TypeError: for a rename that is not a map, columns that are not a list, a bad limit
    """
    if rename is not None and not isinstance(rename, Mapping):
        raise TypeError("rename_column_name_mapping must be a map {old: new}")
    if columns is not None and (isinstance(columns, str) or not isinstance(columns, Sequence)):
        raise TypeError("filter_column_names must be a list of column names")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise TypeError("limit must be a non-negative integer")
    out = [{(rename or {}).get(k, k): v for k, v in r.items()} for r in rows]
    if columns and out:
        wanted = list(dict.fromkeys((rename or {}).get(c, c) for c in columns))
        keep = [c for c in wanted if c in out[0]]
        if keep:
            out = [{c: r.get(c) for c in keep} for r in out]
    if limit and len(out) > limit:
        out = out[-limit:]
    return out


def to_csv(rows: Sequence[Mapping[str, Any]]) -> str | None:
    """CSV text of *rows* (header first), float columns rounded the official way; None when empty."""
    if not rows:
        return None
    import pandas as pd  # only the callers of the _or_get_data functions pay for it

    df = pd.DataFrame(list(rows))
    for col in df.select_dtypes(include=["float32", "float64"]).columns:
        small = df[col].abs() < 10
        df.loc[small, col] = df.loc[small, col].round(4)
        df.loc[~small, col] = df.loc[~small, col].round(2)
    buf = io.StringIO()
    df.to_csv(buf, index=False)
    return buf.getvalue()


def format_rows(rows: Sequence[Mapping[str, Any]], to_format: Any = None, rename: Mapping[str, str] | None = None,
                columns: Sequence[str] | None = None, limit: int | None = None) -> str | list[dict[str, Any]] | None:
    """*rows* shaped and formatted as the official backend sends them (CSV text, a list, or None)."""
    shaped = shape_rows(rows, rename, columns, limit)
    if wire_format(to_format) == "list":
        return shaped or None
    return to_csv(shaped)
