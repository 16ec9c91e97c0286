"""The composite strategy: trades only from signals, behind an indicator trend filter, sized by risk.

It imports no signal module: it combines the records they publish (``on_signal``, docs/signals.md)
on one symbol and interval. Rule, checked on each closed bar (the signals a bar caused come before
that bar's ``on_bar``):

* **setup** (``price_action``): the direction of the latest ``breakout_up`` (+1) / ``breakout_down``
  (-1) of the traded interval, while it is at most ``confirm_bars`` bars old (the breakout's bar
  counts as the first);
* **trend filter**: +1 while the close is above ``EMA(trend_period)``, -1 below (0 equal);
* **entry** when flat: the setup agrees with the trend (short only with ``allow_short``), unless
  * a ``macro`` ``stand_aside`` window (``data.from`` .. ``data.until``) holds the bar's close, or
  * a ``macro`` ``surprise`` of the last ``macro_window`` goes against it by at least
    ``macro_block`` (``direction * score <= -macro_block``);
* **size**: with ``risk`` (default 1 % of equity), the whole units a move of ``stop_atr * ATR(atr_period)``
  against the position loses at most that share of equity, capped at ``max_exposure * equity / close``;
  without it, ``size`` (units or ``"99.99%"``). Either is scaled by the news:
  ``max(0, 1 + news_weight * direction * sentiment)``, ``sentiment`` the mean ``score`` of the
  ``news`` signals of the last ``news_window`` (0 without any), and floored to whole units
  (no entry below one; a share of equity is scaled, at most 100 %);
* **exit** when the trend turns against the position or an opposite breakout is the setup.

Decisions are taken on the bar's close and sent with :meth:`StrategyContext.hold`, so with the
default ``next_open`` broker they fill at the next bar's open. As a plugin (entry point
``composite``) it registers one ``Composite`` configured by ``[plugins.composite]``; run it with its
signal modules: ``aitrados run --plugins price_action,macro,breaking_news,composite``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import deque
from typing import Any

from pydantic import Field

from aitrados import hookimpl
from aitrados.marketdata.models import Bar
from aitrados.trading.indicators import ATR, EMA
from aitrados.trading.orders import parse_size
from aitrados.trading.strategy import Strategy

from ._settings import SymbolStrategySettings, resolve_size

__all__ = ["Composite", "CompositeSettings"]

BREAKOUTS = {"breakout_up": 1, "breakout_down": -1}


class Composite(Strategy):
    """Breakouts confirmed by the trend, blocked by macro windows and surprises, scaled by news; see the module."""

    name = "composite"

    def __init__(self, full_symbol: str = "STOCK:US:SPX", interval: str = "DAY", trend_period: int = 50,
                 atr_period: int = 14, confirm_bars: int = 5, risk: float | None = 0.01, stop_atr: float = 2.0,
                 max_exposure: float = 1.0, size: float | str | None = None, allow_short: bool = False,
                 news_weight: float = 0.5, news_window: dt.timedelta = dt.timedelta(days=3),
                 macro_block: float = 0.5, macro_window: dt.timedelta = dt.timedelta(days=2),
                 quantity: float | None = None) -> None:
        super().__init__()
        for what, v in (("trend_period", trend_period), ("atr_period", atr_period), ("confirm_bars", confirm_bars)):
            if v < 1:
                raise ValueError(f"composite: {what} must be at least 1, got {v}")
        if risk is not None and not 0 < risk <= 1:
            raise ValueError(f"composite: risk must be a share of equity in (0, 1], got {risk}")
        if stop_atr <= 0 or max_exposure <= 0:
            raise ValueError(f"composite: stop_atr ({stop_atr}) and max_exposure ({max_exposure}) must be positive")
        self.size = resolve_size(self.strategy_name, size, quantity)
        self.full_symbol, self.interval = full_symbol, interval
        self.symbols, self.intervals = (full_symbol,), (interval,)
        self.window = max(trend_period, atr_period) + 1
        self.ema, self.atr = EMA(trend_period), ATR(atr_period)
        self.confirm_bars, self.risk, self.stop_atr, self.max_exposure = confirm_bars, risk, stop_atr, max_exposure
        self.allow_short = allow_short
        self.news_weight, self.news_window = news_weight, news_window
        self.macro_block, self.macro_window = macro_block, macro_window
        self.breakout: tuple[int, dt.datetime] | None = None  # (direction, time) of the latest breakout
        self.news: deque[tuple[dt.datetime, float]] = deque()
        self.surprises: deque[tuple[dt.datetime, float]] = deque()
        self.stand_aside: list[tuple[dt.datetime, dt.datetime]] = []
        self.bar_times: deque[dt.datetime] = deque(maxlen=confirm_bars)  # starts of the last bars
        self.wanted = 0
        self.units: float | str = 0.0
        self.signals_seen = 0
        self.last: dict[str, Any] = {}

    # ------------------------------------------------------------------ inputs
    def on_signal(self, signal: Any) -> None:
        """Remember what the rule uses: breakouts, news sentiment, macro surprises and stand-aside windows."""
        if signal.full_symbol not in (self.full_symbol, "*"):
            return
        self.signals_seen += 1
        if signal.module == "price_action" and signal.kind in BREAKOUTS:
            if signal.data.get("interval", self.interval) == self.interval:
                self.breakout = (BREAKOUTS[signal.kind], signal.time)
        elif signal.module == "news" and signal.kind == "sentiment":
            self.news.append((signal.time, signal.score))
        elif signal.module == "macro" and signal.kind == "surprise":
            self.surprises.append((signal.time, signal.score))
        elif signal.module == "macro" and signal.kind == "stand_aside":
            try:
                self.stand_aside.append((_time(signal.data["from"]), _time(signal.data["until"])))
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"composite: stand_aside signal without a readable window: {exc}") from None

    # ------------------------------------------------------------------ the rule
    def setup(self, t: dt.datetime) -> int:
        """The breakout direction still valid at the bar closing at *t* (0 when none or too old)."""
        if self.breakout is None or len(self.bar_times) == 0:
            return 0
        d, when = self.breakout  # a price-action signal is timed at its bar's start
        return d if self.bar_times[0] <= when <= t else 0

    def sentiment(self, t: dt.datetime) -> float:
        """Mean news score of ``(t - news_window, t]`` (0 without news)."""
        while self.news and self.news[0][0] <= t - self.news_window:
            self.news.popleft()
        scores = [s for when, s in self.news if when <= t]
        return sum(scores) / len(scores) if scores else 0.0

    def blocked(self, t: dt.datetime, direction: int) -> str | None:
        """Why a new position in *direction* is not taken at *t* (None when it may be)."""
        self.stand_aside = [(a, b) for a, b in self.stand_aside if b >= t]
        if any(a <= t <= b for a, b in self.stand_aside):
            return "macro stand-aside window"
        while self.surprises and self.surprises[0][0] <= t - self.macro_window:
            self.surprises.popleft()
        if any(when <= t and direction * s <= -self.macro_block for when, s in self.surprises):
            return "macro surprise against it"
        return None

    def entry_size(self, bar: Bar, direction: int, sentiment: float) -> float | str:
        """Units (or the ``size`` share of equity) of a new position; 0 when below one unit."""
        scale = max(0.0, 1.0 + self.news_weight * direction * sentiment)
        if self.risk is None:
            if isinstance(self.size, str):  # a share of equity, scaled (at most all of it)
                share = min(1.0, (parse_size(self.size)[1] or 0.0) * scale)
                return f"{share * 100:.6g}%" if share > 0 else 0.0
            return float(math.floor(self.size * scale))
        acct = self.ctx.account()
        atr = self.atr.value
        if acct is None or acct.equity <= 0 or not atr:
            return 0.0
        units = math.floor(acct.equity * self.risk / (self.stop_atr * atr))
        units = min(units, math.floor(acct.equity * self.max_exposure / bar.close))
        return float(math.floor(units * scale))

    def on_bar(self, bar: Bar) -> None:
        """Update the trend filter and ATR, then enter, hold or exit (see the module)."""
        t = bar.close_datetime
        self.bar_times.append(bar.datetime)
        self.ema.update(bar.close)
        self.atr.update(bar.high, bar.low, bar.close)
        if not (self.ema.ready and self.atr.ready):
            return
        ema = self.ema.value
        assert ema is not None
        trend = (bar.close > ema) - (bar.close < ema)
        setup = self.setup(t)
        sent = self.sentiment(t)
        target, reason = self.wanted, "holding"
        if self.wanted != 0:
            if trend != self.wanted or setup == -self.wanted:
                target, reason = 0, "trend turned" if trend != self.wanted else "opposite breakout"
        elif setup != 0 and setup == trend and (setup > 0 or self.allow_short):
            why = self.blocked(t, setup)
            size = self.entry_size(bar, setup, sent) if why is None else 0.0
            if why is None and size:
                target, reason, self.units = setup, "breakout with the trend", size
            else:
                reason = why or "size below one unit"
        else:
            reason = "no breakout with the trend"
        self.last = {"time": t, "trend": trend, "setup": setup, "sentiment": sent, "target": target,
                     "reason": reason}
        if target != self.wanted:
            self.ctx.hold(self.full_symbol, target, self.units or 1.0, tag="entry" if target else "exit")
            self.wanted = target

    def state(self) -> dict[str, Any]:
        """The trend EMA (drawn over the candles), the wanted side and why."""
        return {"indicators": {f"ema{self.ema.period}": self.ema.value}, "signal": self.wanted,
                "reason": self.last.get("reason", "warming up"), "signals_seen": self.signals_seen}


def _time(v: Any) -> dt.datetime:
    t = v if isinstance(v, dt.datetime) else dt.datetime.fromisoformat(str(v))
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.timezone.utc)


# ---------------------------------------------------------------------- the plugin (entry point `composite`)


class CompositeSettings(SymbolStrategySettings):
    """``[plugins.composite]``: the composite rule's parameters (defaults trade the bundled SPX days)."""

    trend_period: int = Field(50, ge=1, description="EMA period of the trend filter, bars")
    atr_period: int = Field(14, ge=1, description="ATR period of the risk sizing, bars")
    confirm_bars: int = Field(5, ge=1, description="bars a price-action breakout stays a valid setup")
    risk: float | None = Field(0.01, gt=0, le=1, description="share of equity a stop_atr * ATR move may lose "
                               "(None: trade `size` instead)")
    stop_atr: float = Field(2.0, gt=0, description="the sizing stop distance, in ATRs")
    max_exposure: float = Field(1.0, gt=0, description="largest position value, as a multiple of equity")
    news_weight: float = Field(0.5, ge=0, description="how much news sentiment scales the size (0: not at all)")
    news_window: dt.timedelta = Field(dt.timedelta(days=3), description="news signals of this long count")
    macro_block: float = Field(0.5, gt=0, le=1, description="a macro surprise this strong against an entry blocks it")
    macro_window: dt.timedelta = Field(dt.timedelta(days=2), description="macro surprises of this long count")


@hookimpl
def register_settings(register: Any) -> None:
    """Declare ``[plugins.composite]``."""
    register(CompositeSettings)


@hookimpl
def register_strategies(register: Any) -> None:
    """Register the composite strategy built from the plugin's settings."""
    cfg: CompositeSettings = register.settings
    register(Composite(**cfg.model_dump()))
