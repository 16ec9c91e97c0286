"""Corporate actions (splits, dividends) and the back-adjustment of bars for them, on demand.

Records follow the AiTrados ``stock_corporate_action`` fields (``action_type``, ``ex_date``,
``adjustment_factor``, ``cash_amount``, ``split_from``, ``split_to``, ``reference_price`` ...).
:func:`adjust_bars` is pure: bars dated before an action's ex-date are multiplied by its price
factor, and for splits their volume divided by it; factors of several actions multiply.

- split: ``adjustment_factor`` when given, else ``split_from / split_to`` (1-for-4: 0.25);
- dividend: ``adjustment_factor`` when given, else ``1 - cash_amount / reference``, where the
  reference is ``reference_price`` or the close of the last bar before the ex-date.

The bundled ``data/fundamentals_sample/US_2018_synthetic_actions.json`` is a synthetic sample (made-up
actions for AAPL and TSLA in late 2018) for tests and the replay.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import msgspec

from .models import Bar


class CorporateAction(msgspec.Struct, frozen=True, kw_only=True):
    """One split or dividend of one stock (AiTrados field names)."""

    country_iso_code: str
    symbol: str
    action_type: Literal["split", "dividend"]
    ex_date: dt.date
    asset_schema: str = "stock"
    exchange: str | None = None
    adjustment_factor: float | None = None
    cash_amount: float | None = None
    currency: str | None = None
    declaration_date: dt.date | None = None
    record_date: dt.date | None = None
    pay_date: dt.date | None = None
    split_from: float | None = None
    split_to: float | None = None
    reference_price: float | None = None

    @property
    def full_symbol(self) -> str:
        """``ASSET:COUNTRY:SYMBOL`` in upper case."""
        return f"{self.asset_schema}:{self.country_iso_code}:{self.symbol}".upper()

    def price_factor(self, reference_close: float | None) -> float:
        """The factor prices before the ex-date are multiplied by; ValueError when it cannot be known."""
        if self.adjustment_factor is not None:
            f = float(self.adjustment_factor)
        elif self.action_type == "split":
            if not self.split_from or not self.split_to:
                raise ValueError(f"split of {self.full_symbol} on {self.ex_date}: needs split_from and split_to "
                                 "or adjustment_factor")
            f = float(self.split_from) / float(self.split_to)
        else:
            ref = self.reference_price or reference_close
            if self.cash_amount is None or not ref:
                raise ValueError(f"dividend of {self.full_symbol} on {self.ex_date}: needs cash_amount and a "
                                 "reference price (or adjustment_factor), and a bar before the ex-date")
            f = 1.0 - float(self.cash_amount) / float(ref)
        if not 0 < f <= 1e6:
            raise ValueError(f"{self.action_type} of {self.full_symbol} on {self.ex_date}: factor {f} is not positive")
        return f


def load_corporate_actions(path: str | Path) -> list[CorporateAction]:
    """Read a JSON list of corporate actions (AiTrados fields; string factors accepted), sorted by ex-date."""
    rows = json.loads(Path(path).read_text())
    if not isinstance(rows, list):
        raise ValueError(f"{path}: expected a JSON list of corporate actions")
    out = []
    for i, r in enumerate(rows):
        r = {k: v for k, v in r.items() if k in CorporateAction.__struct_fields__}
        for k in ("adjustment_factor", "cash_amount", "split_from", "split_to", "reference_price"):
            if isinstance(r.get(k), str):
                r[k] = float(r[k])
        try:
            out.append(msgspec.convert(r, CorporateAction))
        except msgspec.ValidationError as exc:
            raise ValueError(f"{path}: corporate action #{i}: {exc}") from None
    return sorted(out, key=lambda a: a.ex_date)


def adjust_bars(bars: Sequence[Bar], actions: Iterable[CorporateAction], *, splits: bool = True,
                dividends: bool = True) -> list[Bar]:
    """Back-adjust *bars* (one symbol, oldest first) for the actions of that symbol; returns new bars."""
    if not bars:
        return []
    fs = bars[0].full_symbol.upper()
    mine = sorted((a for a in actions if a.full_symbol == fs and
                   ((a.action_type == "split" and splits) or (a.action_type == "dividend" and dividends))),
                  key=lambda a: a.ex_date)
    days = [b.datetime.date() for b in bars]
    factors: list[tuple[dt.date, float, float]] = []  # (ex_date, price factor, volume factor)
    for a in mine:
        before = [i for i, d in enumerate(days) if d < a.ex_date]
        ref = bars[before[-1]].close if before else None
        f = a.price_factor(ref) if (before or a.adjustment_factor is not None or a.action_type == "split") else None
        if f is None:
            continue  # a dividend before the first bar changes nothing here
        factors.append((a.ex_date, f, 1.0 / f if a.action_type == "split" else 1.0))
    out: list[Bar] = []
    for b, d in zip(bars, days):
        pf = vf = 1.0
        for ex, f, v in factors:
            if d < ex:
                pf *= f
                vf *= v
        if pf == 1.0 and vf == 1.0:
            out.append(b)
            continue
        out.append(msgspec.structs.replace(b, open=b.open * pf, high=b.high * pf, low=b.low * pf, close=b.close * pf,
                                           volume=b.volume * vf, vwap=None if b.vwap is None else b.vwap * pf))
    return out


__all__ = ["CorporateAction", "adjust_bars", "load_corporate_actions"]
