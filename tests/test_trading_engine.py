"""Whole runs: strategies + risk + paper broker over the bundled S&P 500 bars, against independent pandas/ta computations."""

from __future__ import annotations

import datetime as dt

import msgspec
import numpy as np
import pandas as pd
import pytest
import ta

from aitrados.marketdata.loader import bundled_bar_files, load_bars
from aitrados.marketdata.models import Bar, CalendarEvent
from aitrados.trading.broker import BrokerSettings, PaperBroker
from aitrados.trading.engine import TradingEngine
from aitrados.trading.report import build_report
from aitrados.trading.risk import RiskEngine, RiskLimits
from aitrados.trading.strategy import Strategy
from aitrados_strategies.rsi_reversion import RsiReversion
from aitrados_strategies.sma_cross import SmaCross

SPX = "STOCK:US:SPX"


@pytest.fixture(scope="module")
def bars() -> list[Bar]:
    return load_bars(bundled_bar_files()[(SPX, "DAY")]).bars


def frame(bars: list[Bar]) -> pd.DataFrame:
    return pd.DataFrame({"datetime": [b.datetime for b in bars], "open": [b.open for b in bars],
                         "close": [b.close for b in bars]})


SETTINGS = dict(initial_cash=100_000, commission_per_share=0.005, commission_bps=1.0, slippage_bps=2.0)


def oracle_run(df: pd.DataFrame, target: pd.Series, s: dict) -> tuple[list, list, float, np.ndarray]:
    """Independent backtest: target decided at close i trades at open i+1 with the same costs."""
    cash, pos, fills, equity = s["initial_cash"], 0.0, [], []
    want = target.to_numpy()
    pending = 0.0
    for i in range(len(df)):
        if pending:
            px = df.open.iat[i] * (1 + s["slippage_bps"] / 1e4 * np.sign(pending))
            cash -= pending * px + abs(pending) * s["commission_per_share"] + s["commission_bps"] / 1e4 * abs(pending) * px
            pos += pending
            fills.append((df.datetime.iat[i], pending, px))
            pending = 0.0
        if want[i] != pos:
            pending = want[i] - pos
        equity.append(cash + pos * df.close.iat[i])
    return fills, [f[0] for f in fills], equity[-1], np.array(equity)


def test_sma_cross_whole_run_matches_pandas(bars: list[Bar]) -> None:
    engine = TradingEngine([SmaCross(SPX, fast=10, slow=30, quantity=10)], PaperBroker(BrokerSettings(**SETTINGS)))
    engine.run(bars)
    assert engine.errors == []

    df = frame(bars)
    fast = df.close.rolling(10).mean()
    slow = df.close.rolling(30).mean()
    up = (fast.shift() < slow.shift()) & (fast > slow)
    down = (fast.shift() > slow.shift()) & (fast < slow)
    target = pd.Series(np.where(up, 10.0, np.where(down, 0.0, np.nan))).ffill().fillna(0.0)  # flat before the first cross
    want_fills, want_dates, want_final, want_curve = oracle_run(df, target, SETTINGS)

    fills = engine.broker.fills()
    assert len(fills) == len(want_fills) > 100
    assert [f.datetime for f in fills] == want_dates  # same entry and exit bars
    assert [f.signed_quantity for f in fills] == [w[1] for w in want_fills]
    np.testing.assert_allclose([f.price for f in fills], [w[2] for w in want_fills], rtol=1e-12)
    assert engine.broker.equity() == pytest.approx(want_final, rel=1e-10)
    np.testing.assert_allclose([p.equity for p in engine.broker.equity_curve], want_curve, rtol=1e-10)


def test_rsi_reversion_trades_on_ta_rsi_thresholds(bars: list[Bar]) -> None:
    engine = TradingEngine([RsiReversion(SPX, period=14, oversold=30, exit_long=55, quantity=5)],
                           PaperBroker(BrokerSettings(initial_cash=100_000)))
    engine.run(bars)
    df = frame(bars)
    rsi = ta.momentum.RSIIndicator(df.close, window=14).rsi().to_numpy()
    want, state = [], 0.0
    for r in rsi:
        if not np.isnan(r):
            if state == 0 and r < 30:
                state = 5.0
            elif state > 0 and r > 55:
                state = 0.0
        want.append(state)
    _, want_dates, want_final, _ = oracle_run(df, pd.Series(want), dict(initial_cash=100_000, commission_per_share=0,
                                                                         commission_bps=0, slippage_bps=0))
    assert [f.datetime for f in engine.broker.fills()] == want_dates and len(want_dates) > 20
    assert engine.broker.equity() == pytest.approx(want_final, rel=1e-10)


def _run_once(bars: list[Bar]) -> tuple[bytes, bytes]:
    risk = RiskEngine(RiskLimits(max_position=12, max_orders=3, orders_window_seconds=10 * 86_400))
    engine = TradingEngine(
        [SmaCross(SPX, fast=5, slow=20, quantity=10), RsiReversion(SPX, quantity=5)],
        PaperBroker(BrokerSettings(**SETTINGS)), risk,
    )
    events = engine.run(bars[:1500])
    report = build_report(engine.broker)
    return msgspec.json.encode(events), msgspec.json.encode(report)


def test_replay_is_deterministic(bars: list[Bar]) -> None:
    a = _run_once(bars)
    b = _run_once(bars)
    assert a == b
    assert b"order.rejected" in a[0] and b"fill." in a[0]  # the run exercised rejections and fills


def test_kill_switch_pauses_orders_without_stopping_the_run(bars: list[Bar]) -> None:
    engine = TradingEngine([SmaCross(SPX, fast=5, slow=20, quantity=10)], PaperBroker(BrokerSettings(**SETTINGS)))
    part = bars[:600]
    for b in part[:200]:
        engine.handle_bar(b)
    engine.trip("test")
    for b in part[200:400]:
        engine.handle_bar(b)
    engine.reset()
    for b in part[400:]:
        engine.handle_bar(b)
    orders = engine.broker.orders()
    paused = [o for o in orders if part[200].close_datetime <= o.created_at < part[400].close_datetime]
    after = [o for o in orders if o.created_at >= part[400].close_datetime]
    assert paused and all(o.status == "rejected" and o.rule == "kill_switch" for o in paused)
    assert after and all(o.status != "rejected" for o in after)
    assert engine.bars_seen == 600


class Exploding(Strategy):
    name = "exploding"

    def on_bar(self, bar: Bar) -> None:
        raise RuntimeError("strategy bug")


def test_a_raising_strategy_is_logged_once_counted_and_the_others_run(bars: list[Bar]) -> None:
    from loguru import logger

    logged: list[str] = []
    sink = logger.add(lambda m: logged.append(m), level="ERROR")
    try:
        engine = TradingEngine([Exploding(), SmaCross(SPX, fast=5, slow=20)], PaperBroker())
        engine.run(bars[:40])
    finally:
        logger.remove(sink)
    assert engine.callback_errors == {"exploding.on_bar: RuntimeError": 40}
    assert len(engine.errors) == 1 and "exploding.on_bar raised RuntimeError" in engine.errors[0]
    assert len(logged) == 1 and "Traceback" in logged[0]  # the first traceback once, then only a count
    assert engine.broker.fills()


def test_sma_cross_stands_aside_around_high_impact_events(bars: list[Bar]) -> None:
    plain = TradingEngine([SmaCross(SPX, fast=5, slow=20)], PaperBroker())
    plain.run(bars[:400])
    entries = [o for o in plain.broker.orders() if o.tag == "entry"]
    first = entries[0].created_at  # the close at which the first entry signal fired
    events = [
        CalendarEvent("US", "NFP", "payrolls", first - dt.timedelta(hours=7), impact="high"),
        CalendarEvent("US", "MINOR", "minor", entries[1].created_at, impact="low"),
    ]
    aside = SmaCross(SPX, fast=5, slow=20, stand_aside_impact="high")
    engine = TradingEngine([aside], PaperBroker())
    for ev in events:
        engine.handle_calendar_event(ev)
    engine.run(bars[:400])
    got = [o for o in engine.broker.orders() if o.tag == "entry"]
    assert aside.skipped_entries >= 1
    assert all(o.created_at != first for o in got)  # no entry at the event's bar
    assert got[0].created_at > first
    assert entries[1].created_at in [o.created_at for o in got]  # a low-impact event is ignored
    # the stand-aside window: the event lies within [close - 12 h, close + 24 h] of the skipped bar
    assert aside.standing_aside(first) and not aside.standing_aside(first + dt.timedelta(days=2))


@pytest.mark.parametrize("as_record", [False, True], ids=["snapshot", "published-record"])
def test_mtf_trend_uses_only_closed_weeks_and_matches_pandas(bars: list[Bar], as_record: bool) -> None:
    from aitrados.marketdata.align import Aligner
    from aitrados.marketdata.chart import resample_bars
    from aitrados_strategies.mtf_trend import MtfTrend

    weeks = resample_bars(bars, "WEEK", include_partial=False)
    strat = MtfTrend(SPX, lower="DAY", higher="WEEK", trend_period=10, fast=5, slow=20, quantity=10)
    engine = TradingEngine([strat], PaperBroker(BrokerSettings(initial_cash=100_000)))
    aligner = Aligner()
    for name, members in strat.groups.items():
        aligner.add_group(name, members)
    stream = sorted([(b.close_datetime, 0, b) for b in bars] + [(w.close_datetime, 1, w) for w in weeks],
                    key=lambda t: (t[0], t[1]))
    for when, _, b in stream:
        engine.handle_bar(b)
        for snap in aligner.feed(b, now=when):
            # over the bus a snapshot arrives as its record; the engine rebuilds it
            engine.handle_mtf(msgspec.json.decode(msgspec.json.encode(snap.to_record())) if as_record else snap)
    assert engine.errors == []

    # oracle: a week (W-FRI) is visible from its last trading day on (the Thursday before a Good
    # Friday: the NYSE calendar closes the week then); trend = weekly close > SMA10 of weekly closes
    df = frame(bars)
    df["date"] = pd.to_datetime([b.datetime.date() for b in bars])
    by_week = df.groupby(df["date"].dt.to_period("W-FRI"))
    weekly = pd.Series(by_week.close.last().to_numpy(), index=pd.DatetimeIndex(by_week.date.max().to_numpy(), name="date"))
    trend_up = (weekly > weekly.rolling(10).mean()).rename("up").reset_index()
    merged = pd.merge_asof(df[["date"]], trend_up, on="date", direction="backward")
    up = merged["up"].fillna(False).astype(bool).to_numpy()
    fast = df.close.ewm(span=5, adjust=False, min_periods=5).mean()
    slow = df.close.ewm(span=20, adjust=False, min_periods=20).mean()
    target = pd.Series(np.where(up & (fast > slow).to_numpy(), 10.0, 0.0))
    _, want_dates, want_final, _ = oracle_run(df, target, dict(initial_cash=100_000, commission_per_share=0,
                                                               commission_bps=0, slippage_bps=0))
    got = [f.datetime for f in engine.broker.fills()]
    assert len(got) > 50 and got == want_dates
    assert engine.broker.equity() == pytest.approx(want_final, rel=1e-10)


class ChartWatcher(Strategy):
    name = "chart_watcher"
    symbols = (SPX,)
    intervals = ("DAY",)

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str, int]] = []

    def on_chart(self, full_symbol: str, interval: str, window: list) -> None:
        self.seen.append((full_symbol, interval, len(window)))
        if len(window) == 3:
            self.ctx.buy(full_symbol, 1)


def test_chart_news_and_calendar_delivery(bars: list[Bar]) -> None:
    w = ChartWatcher()
    engine = TradingEngine([w], PaperBroker())
    engine.handle_bar(bars[0])
    engine.handle_chart(SPX, "WEEK", bars[:2])  # not an interval it wants
    events = engine.handle_chart(SPX, "DAY", bars[:3])
    assert w.seen == [(SPX, "DAY", 3)]
    assert [e.topic for e in events] == [f"order.accepted.{SPX}"] and events[0].payload.interval == "DAY"
    # records as published on the bus are turned back into typed items
    from aitrados.marketdata.models import event_to_record, news_to_record, NewsItem

    got: list = []
    w.on_news = got.append  # type: ignore[method-assign]
    w.on_calendar_event = got.append  # type: ignore[method-assign]
    engine.handle_news(news_to_record(NewsItem(bars[0].close_datetime, "headline", full_symbol=SPX)))
    engine.handle_calendar_event(event_to_record(CalendarEvent("US", "CPI", "cpi", bars[0].close_datetime, impact="high")))
    assert type(got[0]).__name__ == "NewsItem" and got[0].title == "headline"
    assert type(got[1]).__name__ == "CalendarEvent" and got[1].impact == "high"


def test_two_symbols_share_one_account_and_add_up(bars: list[Bar]) -> None:
    ixic = load_bars(bundled_bar_files()[("STOCK:US:IXIC", "DAY")]).bars[:800]
    spx = bars[:800]

    def run(strats: list[Strategy], feed: list[Bar]) -> PaperBroker:
        e = TradingEngine(strats, PaperBroker(BrokerSettings(**SETTINGS)))
        e.run(feed)
        return e.broker

    a = run([SmaCross(SPX, fast=10, slow=30)], spx)
    b = run([SmaCross("STOCK:US:IXIC", fast=10, slow=30)], ixic)

    class IxicCross(SmaCross):
        name = "sma_cross_ixic"

    merged = sorted(spx + ixic, key=lambda x: (x.close_datetime, x.full_symbol))
    both = run([SmaCross(SPX, fast=10, slow=30), IxicCross("STOCK:US:IXIC", fast=10, slow=30)], merged)
    # independent books: the combined PnL is the sum, one equity point per close time
    assert both.equity() - 100_000 == pytest.approx((a.equity() - 100_000) + (b.equity() - 100_000), rel=1e-10)
    assert len(both.equity_curve) == len({x.close_datetime for x in merged})
    assert len(both.fills()) == len(a.fills()) + len(b.fills())


def test_needs_context_and_client_ids() -> None:
    from aitrados.trading.strategy import StrategyContext
    from aitrados_strategies.mtf_trend import MtfTrend

    needs = MtfTrend(SPX, lower="DAY", higher="WEEK", group="g1").needs()
    assert needs.symbols == (SPX,) and needs.intervals == ("DAY", "WEEK")
    assert needs.groups == {"g1": {SPX: ["DAY", "WEEK"]}} and needs.window == 20
    s = SmaCross()
    with pytest.raises(RuntimeError, match="has no context: add it to a TradingEngine"):
        s.ctx.buy(SPX, 1)
    ctx = StrategyContext("sma_cross")
    s.bind(ctx)
    assert [s.ctx.buy(SPX, 1), s.ctx.sell(SPX, 2, limit=10.0), s.ctx.target_position(SPX, 0)] == [
        "sma_cross-1", "sma_cross-2", "sma_cross-3"]
    with pytest.raises(ValueError, match="positive finite"):
        s.ctx.buy(SPX, 0)
    queued = ctx.drain()
    assert [q.order_type for q in queued] == ["market", "limit", "market"] and ctx.drain() == []
    with pytest.raises(ValueError, match="unique"):
        TradingEngine([SmaCross(), SmaCross()])
    with pytest.raises(ValueError, match="fast < slow"):
        SmaCross(fast=30, slow=10)


def test_stand_aside_with_the_bundled_calendar(bars: list[Bar]) -> None:
    from aitrados.marketdata.loader import bundled_data_dir, load_calendar

    calendar = load_calendar(bundled_data_dir() / "calendar" / "US_2018_sample.json").records
    high = [e.event_timestamp for e in calendar if e.impact == "high"]
    recent = [b for b in bars if b.datetime.year >= 2017]

    def near_event(t: dt.datetime) -> bool:
        return any(t - dt.timedelta(hours=12) <= e <= t + dt.timedelta(hours=24) for e in high)

    plain = TradingEngine([SmaCross(SPX, fast=5, slow=20)], PaperBroker())
    plain.run(recent)
    aside = SmaCross(SPX, fast=5, slow=20, stand_aside_impact="high")
    engine = TradingEngine([aside], PaperBroker())
    for ev in calendar:  # the schedule is known ahead, as a calendar provider publishes it
        engine.handle_calendar_event(ev)
    engine.run(recent)
    plain_entries = [o.created_at for o in plain.broker.orders() if o.tag == "entry"]
    aside_entries = [o.created_at for o in engine.broker.orders() if o.tag == "entry"]
    assert any(near_event(t) for t in plain_entries)  # the data has entries next to events...
    assert aside_entries and not any(near_event(t) for t in aside_entries)  # ...which the option avoids
    assert aside.skipped_entries > 0
