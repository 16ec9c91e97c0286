"""backtesting.py as the oracle: the same SMA(10, 20) crossover on its bundled GOOG daily bars.

Both sides trade all-in long/short (``size="99.99%"`` here, ``size=0.9999`` there), fill market
orders at the next open, and start from 10 000. Their trade lists (entry/exit day and price,
direction, units) and final equity must be the same, without and with a commission and with
stop-loss/take-profit brackets. backtesting.py is a test-only dependency.
"""

from __future__ import annotations

import datetime as dt
import warnings

import pandas as pd
import pytest

backtesting = pytest.importorskip("backtesting")
from backtesting import Backtest  # noqa: E402
from backtesting import Strategy as BtStrategy  # noqa: E402
from backtesting.lib import crossover  # noqa: E402
from backtesting.test import GOOG, SMA  # noqa: E402

from aitrados.marketdata.models import Bar  # noqa: E402
from aitrados.trading.broker import BrokerSettings, PaperBroker  # noqa: E402
from aitrados.trading.engine import TradingEngine  # noqa: E402
from aitrados.trading.report import build_report  # noqa: E402
from aitrados_strategies.sma_cross import SmaCross  # noqa: E402

SYM = "STOCK:US:GOOG"
CASH = 10_000.0


def goog_bars() -> list[Bar]:
    """GOOG's daily rows as bars: open 14:30 UTC, close 21:00 UTC of the row's date."""
    out = []
    for ts, row in GOOG.iterrows():
        day = dt.datetime(ts.year, ts.month, ts.day, 14, 30, tzinfo=dt.timezone.utc)
        out.append(Bar(SYM, "DAY", day, day.replace(hour=21), float(row.Open), float(row.High), float(row.Low),
                       float(row.Close), float(row.Volume)))
    return out


class BtSmaCross(BtStrategy):
    """The crossover as backtesting.py's documentation writes it, sized 0.9999 (this version's default is
    1 - epsilon), with optional bracket percentages."""

    n1 = 10
    n2 = 20
    sl_pct: float | None = None
    tp_pct: float | None = None

    def init(self) -> None:
        self.sma1 = self.I(SMA, self.data.Close, self.n1)
        self.sma2 = self.I(SMA, self.data.Close, self.n2)

    def next(self) -> None:
        c = self.data.Close[-1]
        if crossover(self.sma1, self.sma2):
            self.position.close()
            self.buy(size=0.9999, sl=c * (1 - self.sl_pct) if self.sl_pct else None, tp=c * (1 + self.tp_pct) if self.tp_pct else None)
        elif crossover(self.sma2, self.sma1):
            self.position.close()
            self.sell(size=0.9999, sl=c * (1 + self.sl_pct) if self.sl_pct else None, tp=c * (1 - self.tp_pct) if self.tp_pct else None)


def run_backtesting(commission: float = 0.0, sl_pct: float | None = None, tp_pct: float | None = None) -> pd.Series:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "some trades remain open": the open trade is compared via final equity
        bt = Backtest(GOOG, BtSmaCross, cash=CASH, commission=commission)
        return bt.run(sl_pct=sl_pct, tp_pct=tp_pct)


def run_ours(commission_bps: float = 0.0, sl_pct: float | None = None, tp_pct: float | None = None) -> TradingEngine:
    strat = SmaCross(SYM, "DAY", fast=10, slow=20, size="99.99%", allow_short=True,
                     stop_loss_pct=sl_pct, take_profit_pct=tp_pct)
    engine = TradingEngine([strat], PaperBroker(BrokerSettings(initial_cash=CASH, commission_bps=commission_bps)))
    engine.run(goog_bars())
    assert engine.errors == []
    return engine


def theirs_trades(stats: pd.Series) -> list[tuple]:
    t = stats._trades
    return [(r.EntryTime.date(), r.ExitTime.date(), "long" if r.Size > 0 else "short", abs(int(r.Size)),
             float(r.EntryPrice), float(r.ExitPrice)) for r in t.itertuples()]


def ours_trades(engine: TradingEngine) -> list[tuple]:
    rep = build_report(engine.broker)
    return [(t.entry_time.date(), t.exit_time.date(), t.direction, int(t.quantity), t.entry_price, t.exit_price)
            for t in rep.trades if t.closed]


def assert_same_run(engine: TradingEngine, stats: pd.Series) -> None:
    ours, theirs = ours_trades(engine), theirs_trades(stats)
    assert len(theirs) > 10
    assert [t[:4] for t in ours] == [t[:4] for t in theirs]  # days, direction and units exactly
    for a, b in zip(ours, theirs):
        assert a[4:] == pytest.approx(b[4:], rel=1e-12)  # prices (the same floats from the same CSV)
    assert engine.broker.equity() == pytest.approx(stats["Equity Final [$]"], rel=1e-9)


def test_sma_cross_all_in_long_short_matches_backtesting_py() -> None:
    stats = run_backtesting()
    engine = run_ours()
    assert_same_run(engine, stats)
    # the reversals were a close then an open: never a single order across zero, nothing rejected
    assert engine.broker.orders("rejected") == []
    assert all(o.reduce_only or o.fraction == pytest.approx(0.9999) for o in engine.broker.orders())


def test_with_commission_matches_backtesting_py() -> None:
    stats = run_backtesting(commission=0.002)
    engine = run_ours(commission_bps=20.0)
    assert_same_run(engine, stats)
    rep = build_report(engine.broker)
    # commissions are charged the same way (entry and exit, on notional)
    assert sum(t.commission for t in rep.trades if t.closed) == pytest.approx(stats._trades.Commission.sum(), rel=1e-9)


def test_with_stop_loss_and_take_profit_matches_backtesting_py() -> None:
    stats = run_backtesting(commission=0.002, sl_pct=0.05, tp_pct=0.10)
    engine = run_ours(commission_bps=20.0, sl_pct=0.05, tp_pct=0.10)
    assert_same_run(engine, stats)
    fills = engine.broker.fills()
    tags = {f.tag for f in fills}
    assert {"sl", "tp"} <= tags  # both legs of the bracket closed some trades


@pytest.mark.parametrize("commission,sl,tp", [(0.0, None, None), (0.002, 0.05, 0.10)])
def test_shared_metrics_equal_backtesting_py(commission: float, sl: float | None, tp: float | None) -> None:
    stats = run_backtesting(commission=commission, sl_pct=sl, tp_pct=tp)
    engine = run_ours(commission_bps=commission * 10_000, sl_pct=sl, tp_pct=tp)
    m = build_report(engine.broker, "DAY").metrics
    same = {  # ours (fractions) -> theirs (percent unless noted)
        "final_equity": ("Equity Final [$]", 1), "equity_peak": ("Equity Peak [$]", 1),
        "total_return": ("Return [%]", 100), "cagr": ("CAGR [%]", 100), "return_ann": ("Return (Ann.) [%]", 100),
        "volatility_ann": ("Volatility (Ann.) [%]", 100), "sortino": ("Sortino Ratio", 1),
        "calmar": ("Calmar Ratio", 1), "max_drawdown": ("Max. Drawdown [%]", -100), "trades": ("# Trades", 1),
        "win_rate": ("Win Rate [%]", 100), "best_trade": ("Best Trade [%]", 100),
        "worst_trade": ("Worst Trade [%]", 100), "avg_trade": ("Avg. Trade [%]", 100),
        "expectancy": ("Expectancy [%]", 100), "sqn": ("SQN", 1), "kelly": ("Kelly Criterion", 1),
    }
    for ours, (theirs, scale) in same.items():
        assert getattr(m, ours) * scale == pytest.approx(float(stats[theirs]), rel=1e-9), ours
    assert pd.Timedelta(m.max_drawdown_duration) == stats["Max. Drawdown Duration"]
    assert pd.Timedelta(m.max_trade_duration) == stats["Max. Trade Duration"]
    assert pd.Timedelta(m.avg_trade_duration).ceil("D") == stats["Avg. Trade Duration"]  # theirs is rounded up
    if commission:
        assert sum(t.commission for t in build_report(engine.broker).trades if t.closed) == pytest.approx(
            stats["Commissions [$]"], rel=1e-9)


@pytest.mark.timeout(180)
def test_aitrados_run_on_the_goog_file_matches_backtesting_py(tmp_path, ipc_dir: str) -> None:
    """The same comparison through the whole process: ``aitrados run --plugins sma_cross`` replaying GOOG as a
    user bar file (Yahoo-style CSV), the report read back from ``report/latest``."""
    import json
    import subprocess

    from conftest import AITRADOS, bus_settings, cli_env

    csv_path = tmp_path / "STOCK_US_GOOG_DAY.csv"
    GOOG.rename_axis("Date").reset_index().to_csv(csv_path, index=False)
    plugin = {"sma_cross": {"full_symbol": SYM, "fast": 10, "slow": 20, "size": "99.99%", "allow_short": True}}
    env = cli_env(bus_settings(ipc_dir), AITRADOS_PLUGINS=json.dumps(plugin),
                  AITRADOS_MARKETDATA__PROVIDER="replay", AITRADOS_MARKETDATA__REPLAY_BUNDLED="false",
                  AITRADOS_MARKETDATA__REPLAY_BAR_FILES=json.dumps([str(csv_path)]),
                  AITRADOS_TRADING__BROKER__INITIAL_CASH=str(CASH), AITRADOS_TRADING__BROKER__COMMISSION_BPS="20")
    env.pop("AITRADOS_SECRET_KEY", None)
    r = subprocess.run([*AITRADOS, "run", "--plugins", "sma_cross", "--report-dir", str(tmp_path / "report")],
                       env=env, capture_output=True, text=True, timeout=150, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    latest = tmp_path / "report" / "latest"
    metrics = json.loads((latest / "metrics.json").read_text())
    trades = pd.read_csv(latest / "trades.csv")
    closed = trades[trades.closed]
    stats = run_backtesting(commission=0.002)
    theirs = theirs_trades(stats)
    ours = [(dt.date.fromisoformat(e[:10]), dt.date.fromisoformat(x[:10]), d, int(q), ep, xp)
            for e, x, d, q, ep, xp in closed[["entry_time", "exit_time", "direction", "quantity", "entry_price",
                                              "exit_price"]].itertuples(index=False)]
    assert [t[:4] for t in ours] == [t[:4] for t in theirs] and len(theirs) > 10
    assert [p for t in ours for p in t[4:]] == pytest.approx([p for t in theirs for p in t[4:]], rel=1e-12)
    assert metrics["final_equity"] == pytest.approx(stats["Equity Final [$]"], rel=1e-9)
    assert metrics["run"]["data"][SYM]["bars"] == len(GOOG) and metrics["run"]["strategies"][0]["size"] == "99.99%"
