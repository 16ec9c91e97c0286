"""Fetching the last N closed bars of a chart window over HTTP, beyond the 1000-bar page limit.

``ohlc/latest`` answers at most :data:`OHLC_PAGE_LIMIT` bars. A longer window takes that page, then
walks back through ``ohlc/history`` newest first (``sort=desc``, paged with ``next_page_key``) from
just before the oldest bar it has, and stops as soon as it has N bars or the history runs out.
"""

from __future__ import annotations

import datetime as dt
from contextlib import aclosing

from .http_client import AsyncAitradosHTTPClient, RequestBuilder
from .models import Bar

__all__ = ["OHLC_PAGE_LIMIT", "HISTORY_START", "latest_closed_bars"]

#: The most bars one OHLC request may ask for (the protocol's documented maximum).
OHLC_PAGE_LIMIT = 1000
#: The ``from_date`` of the backward history walk: before any data a provider serves.
HISTORY_START = dt.datetime(1900, 1, 1, tzinfo=dt.timezone.utc)


async def latest_closed_bars(http: AsyncAitradosHTTPClient, full_symbol: str, interval: str, n: int) -> list[Bar]:
    """The last ``n`` closed bars of ``(full_symbol, interval)``, oldest first (fewer when the
    provider has fewer), in as many requests as ``n`` needs: one up to 1000 bars, then one history
    page per further 1000.

    :returns: ``[]`` without a request when ``n`` < 1; provider errors propagate as the client raises them.
    """
    if n < 1:
        return []
    bars = await http.ohlc_latest(full_symbol, interval, limit=min(n, OHLC_PAGE_LIMIT))
    if len(bars) < min(n, OHLC_PAGE_LIMIT) or len(bars) >= n:
        return bars[-n:]
    older: list[Bar] = []  # newest first
    before = bars[0].datetime - dt.timedelta(seconds=1)  # bars open on whole minutes: strictly older ones
    call = RequestBuilder.ohlc_history(full_symbol, interval, HISTORY_START, before,
                                       min(n - len(bars), OHLC_PAGE_LIMIT), "desc")
    async with aclosing(http.iter_pages(call)) as pages:
        async for page in pages:
            older += page
            if not page or len(older) + len(bars) >= n:
                break
    older.reverse()
    return (older + bars)[-n:]
