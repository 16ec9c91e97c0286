"""Report metrics against hand computation and pandas; trade list CSV, equity PNG and summary table."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aitrados.marketdata.loader import bundled_bar_files, load_bars
from aitrados.trading.broker import BrokerSettings, EquityPoint, PaperBroker
from aitrados.trading.engine import TradingEngine
from aitrados.trading.orders import Fill
from aitrados.trading.report import (
    build_report,
    compute_metrics,
    periods_per_year,
    summary_table,
    trades_from_fills,
)
from aitrados_strategies.sma_cross import SmaCross

UTC = dt.timezone.utc
SYM = "STOCK:US:TEST"


def t(day: int) -> dt.datetime:
    return dt.datetime(2024, 1, day, 21, tzinfo=UTC)


def test_metrics_by_hand() -> None:
    curve = [EquityPoint(t(2), 110, 0, 0), EquityPoint(t(3), 99, 0, 5), EquityPoint(t(4), 121, 0, 5),
             EquityPoint(t(5), 108.9, 0, 0)]
    m = compute_metrics(curve, 100.0, [], periods=252)
    # total return = 108.9 / 100 - 1
    assert m.total_return == pytest.approx(0.089)
    # drawdowns: 110 -> 99 is 10 %, 121 -> 108.9 is 10 %
    assert m.max_drawdown == pytest.approx(0.10)
    # returns from the initial cash: +10 %, -10 %, +22.22 %, -10 %
    r = pd.Series([0.1, -0.1, 121 / 99 - 1, -0.1])
    assert m.sharpe == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(252))
    assert m.exposure == 0.5 and m.points == 4
    assert m.trades == 0 and m.win_rate is None


def test_flat_curve_has_no_sharpe() -> None:
    m = compute_metrics([EquityPoint(t(2), 100, 100, 0), EquityPoint(t(3), 100, 100, 0)], 100.0, [])
    assert m.sharpe is None and m.max_drawdown == 0 and m.total_return == 0


def fill(day: int, side: str, qty: float, px: float, comm: float) -> Fill:
    return Fill(day, SYM, side, qty, px, comm, t(day), "s")


def test_round_trips_by_hand() -> None:
    fills = [
        fill(2, "buy", 10, 100, 1.0), fill(3, "sell", 10, 110, 1.0),  # long: 10 * 10 - 2 = 98
        fill(4, "sell", 5, 100, 0.5), fill(5, "buy", 10, 90, 1.0),  # short 5 covered at 90: 50 - 0.5 - 0.5 = 49
        # ... and the same buy opens long 5 @ 90 (half its commission, 0.5), open, marked at 95: 25 - 0.5
    ]
    trades = trades_from_fills(fills, {SYM: 95.0})
    assert [(tr.direction, tr.closed) for tr in trades] == [("long", True), ("short", True), ("long", False)]
    assert [tr.pnl for tr in trades] == pytest.approx([98.0, 49.0, 24.5])
    assert trades[0].entry_price == 100 and trades[0].exit_price == 110 and trades[0].exit_time == t(3)
    assert trades[1].quantity == 5 and trades[2].entry_price == 90 and trades[2].exit_time is None
    m = compute_metrics([EquityPoint(t(5), 100, 100, 0)], 100.0, trades)
    assert m.trades == 2 and m.win_rate == 1.0


def test_scaling_in_and_out_averages_prices() -> None:
    fills = [fill(2, "buy", 10, 100, 0), fill(3, "buy", 10, 110, 0), fill(4, "sell", 5, 120, 0), fill(5, "sell", 15, 90, 0)]
    (tr,) = trades_from_fills(fills)
    # entry avg 105; exit avg (5*120 + 15*90) / 20 = 97.5; pnl 5*15 + 15*(-15) = -150
    assert tr.entry_price == 105 and tr.exit_price == 97.5 and tr.quantity == 20
    assert tr.pnl == pytest.approx(-150.0) and tr.closed


@pytest.fixture(scope="module")
def run() -> PaperBroker:
    bars = load_bars(bundled_bar_files()[("STOCK:US:SPX", "DAY")]).bars
    engine = TradingEngine([SmaCross("STOCK:US:SPX", fast=10, slow=30, quantity=20)],
                           PaperBroker(BrokerSettings(initial_cash=100_000, commission_bps=2, slippage_bps=1)))
    engine.run(bars)
    return engine.broker


def test_whole_run_report_against_pandas(run: PaperBroker) -> None:
    rep = build_report(run, "DAY")
    m = rep.metrics
    eq = pd.Series([p.equity for p in rep.equity_curve])
    assert m.final_equity == pytest.approx(run.equity())
    assert m.total_return == pytest.approx(eq.iloc[-1] / 100_000 - 1)
    peak = np.maximum.accumulate(np.concatenate([[100_000.0], eq.to_numpy()]))[1:]
    assert m.max_drawdown == pytest.approx((1 - eq / peak).max())
    r = pd.concat([pd.Series([100_000.0]), eq], ignore_index=True).pct_change().dropna()
    assert m.sharpe == pytest.approx(r.mean() / r.std() * math.sqrt(252))
    invested = pd.Series([p.gross_exposure > 0 for p in rep.equity_curve])
    assert m.exposure == pytest.approx(invested.mean()) and 0 < m.exposure < 1
    # the trades' PnL (net of commission, open trade marked) adds up to the equity change
    assert sum(tr.pnl for tr in rep.trades) == pytest.approx(run.equity() - 100_000, abs=1e-6)
    closed = [tr for tr in rep.trades if tr.closed]
    assert m.trades == len(closed) > 50
    assert m.win_rate == pytest.approx(sum(tr.pnl > 0 for tr in closed) / len(closed))
    assert m.commission == pytest.approx(sum(f.commission for f in run.fills()))


def test_report_files_and_summary(run: PaperBroker, tmp_path: Path) -> None:
    rep = build_report(run, "DAY")
    paths = rep.write(tmp_path / "out", title="SMA cross on SPX")
    trades = pd.read_csv(paths["trades"])
    assert len(trades) == len(rep.trades)
    assert list(trades.columns[:4]) == ["full_symbol", "strategy", "direction", "quantity"]
    assert trades.pnl.sum() == pytest.approx(sum(tr.pnl for tr in rep.trades), rel=1e-9)
    png = paths["equity_png"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    eq = pd.read_csv(paths["equity_csv"])
    assert len(eq) == len(rep.equity_curve) and eq.equity.iloc[-1] == pytest.approx(run.equity())
    text = summary_table(rep.metrics)
    assert "total return" in text and f"{rep.metrics.trades}" in text and "sqrt(252)" in text
    assert paths["summary"].read_text().strip() == rep.summary().strip()


def test_periods_per_year() -> None:
    assert periods_per_year("DAY") == 252 and periods_per_year("week") == 52 and periods_per_year("MON") == 12
    assert periods_per_year("15M") == 252 * 26 and periods_per_year("60M") == 252 * 6.5
    with pytest.raises(ValueError, match="unknown interval"):
        periods_per_year("2D")


def test_trade_columns_buy_and_hold_and_run_metadata(run: PaperBroker, tmp_path: Path) -> None:
    from aitrados import __version__
    from aitrados.trading.report import run_params

    class FakeEngine:  # run_params reads only these
        broker = run
        strategies = [SmaCross("STOCK:US:SPX", fast=10, slow=30, size="50%")]
        risk = type("R", (), {"limits": __import__("aitrados.trading.risk", fromlist=["RiskLimits"]).RiskLimits()})()
        bars_seen = 5031

    rep = build_report(run, "DAY", params=run_params(FakeEngine(), "DAY"))
    closes = pd.Series([c for _, c in run.closes["STOCK:US:SPX"]])
    assert rep.metrics.buy_and_hold_return == pytest.approx(closes.iloc[-1] / closes.iloc[0] - 1)
    paths = rep.write(tmp_path / "out", title="SMA cross on SPX")
    trades = pd.read_csv(paths["trades"])
    closed = trades[trades.closed]
    # return % = pnl / (quantity * entry price), in percent; duration = exit - entry
    assert closed.return_pct.to_numpy() == pytest.approx((closed.pnl / (closed.quantity * closed.entry_price) * 100).to_numpy())
    durations = pd.to_timedelta(closed.duration)
    assert (durations == pd.to_datetime(closed.exit_time) - pd.to_datetime(closed.entry_time)).all()
    assert set(trades.tag) == {"entry"}
    doc = json.loads(paths["metrics"].read_text())
    assert doc["final_equity"] == pytest.approx(run.equity()) and doc["run"]["version"] == __version__
    assert doc["run"]["broker"]["commission_bps"] == 2 and doc["run"]["strategies"][0]["size"] == "50%"
    span = doc["run"]["data"]["STOCK:US:SPX"]
    assert span["bars"] == 5031 and span["first"] < span["last"]
    for key in ("cagr", "sortino", "calmar", "profit_factor", "expectancy", "sqn", "best_trade", "worst_trade",
                "buy_and_hold_return", "max_drawdown_duration_days", "avg_trade_duration_days", "rejected", "margin_calls"):
        assert key in doc and doc[key] is not None, key
    wins = closed.pnl[closed.pnl > 0].sum()
    assert doc["profit_factor"] == pytest.approx(wins / -closed.pnl[closed.pnl < 0].sum())
    text = rep.summary()
    assert "buy and hold return" in text and "rejected orders" in text and "margin calls" in text


def test_run_metadata_skips_a_strategys_own_non_plain_attributes(run: PaperBroker, tmp_path: Path) -> None:
    """A user strategy's `entry` may be an indicator object: metrics.json is still written, without it."""
    from aitrados.trading.report import run_params
    from aitrados.trading.risk import RiskLimits
    from aitrados.trading.strategy import Strategy

    class Breakout(Strategy):
        symbols = ("STOCK:US:SPX",)

        def __init__(self) -> None:
            super().__init__()
            self.entry, self.size = object(), 3.0

    class FakeEngine:  # run_params reads only these
        broker = run
        strategies = [Breakout()]
        risk = type("R", (), {"limits": RiskLimits()})()
        bars_seen = 5031

    paths = build_report(run, "DAY", params=run_params(FakeEngine(), "DAY")).write(tmp_path / "out")
    [item] = json.loads(paths["metrics"].read_text())["run"]["strategies"]
    assert "entry" not in item and item["size"] == 3.0 and item["name"] == "breakout"

def test_each_run_gets_its_own_folder_and_latest_points_at_it(tmp_path: Path) -> None:
    from aitrados.trading.report import run_folder

    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    first = run_folder(tmp_path, when)
    second = run_folder(tmp_path, when)  # same second: a suffix, never the same folder
    assert (first.name, second.name) == ("run-20260102T030405Z", "run-20260102T030405Z-2")
    latest = tmp_path / "latest"
    assert latest.is_symlink() and latest.resolve() == second.resolve()
    third = run_folder(tmp_path)
    assert latest.resolve() == third.resolve() and third.name.startswith("run-")
    assert sorted(p.name for p in tmp_path.iterdir() if not p.is_symlink()) == sorted([first.name, second.name, third.name])


def test_png_shows_price_markers_and_buy_and_hold(run: PaperBroker, tmp_path: Path) -> None:
    from aitrados.trading.report import plot_report

    rep = build_report(run, "DAY")
    with_trades = plot_report(rep.equity_curve, rep.trades, rep.prices, tmp_path / "a.png", "x", 100_000)
    bare = plot_report(rep.equity_curve, [], {}, tmp_path / "b.png", "x", 100_000)
    import matplotlib.image as mpimg

    a, b = mpimg.imread(with_trades), mpimg.imread(bare)
    assert a.shape[0] > b.shape[0]  # a price panel was added for the traded symbol


@pytest.mark.parametrize("scale, symbols", [(1.0, 0), (1.0, 3), (-3.0, 1), (40.0, 2)])
def test_png_margins_hold_every_label(scale: float, symbols: int, tmp_path: Path) -> None:
    """The picture's margins are fixed (no tight_layout pass): whatever the values (wide tick labels,
    negative or scientific equity) and the number of price panels, nothing is cut at an edge — the
    outermost pixels are all background."""
    from matplotlib.image import imread

    from aitrados.trading.metrics import Trade
    from aitrados.trading.report import plot_report

    t0 = dt.datetime(2004, 8, 19, tzinfo=dt.timezone.utc)
    days = [t0 + dt.timedelta(days=i) for i in range(600)]
    equity = [100_000 + scale * math.sin(i / 40) * 50_000 + i * 900 for i in range(600)]
    curve = [EquityPoint(d, e, e, 0.0) for d, e in zip(days, equity)]
    syms = [f"STOCK:US:S{k}" for k in range(symbols)]
    prices = {s: [(d, 12_345.0 + 3_000 * math.cos(i / 30 + k)) for i, d in enumerate(days)] for k, s in enumerate(syms)}
    trades = [Trade(s, "long" if i % 2 else "short", 1.0, days[i * 50], prices[s][i * 50][1], days[i * 50 + 20],
                    prices[s][i * 50 + 20][1], closed=True) for s in syms for i in range(10)]
    img = imread(plot_report(curve, trades, prices, tmp_path / "e.png", "a long strategy title", 100_000))
    edges = np.concatenate([img[:3].reshape(-1, img.shape[2]), img[-3:].reshape(-1, img.shape[2]),
                            img[:, :3].reshape(-1, img.shape[2]), img[:, -3:].reshape(-1, img.shape[2])])
    assert (edges[:, :3] > 0.99).all(), "a label reaches the picture's edge"


def test_report_html_data_is_the_run_written_in_chunks(run: PaperBroker, tmp_path: Path) -> None:
    """report.html's embedded JSON is the run's prices, equity and trades, whatever the chunking:
    series longer than one chunk, an empty one, a name that would end the <script>, NaN as null."""
    import re

    from aitrados.trading import report_html
    from aitrados.trading.report_html import write_html_report

    rep = build_report(run, "DAY")
    n = report_html._CANDLES_PER_CHUNK * 2 + 7
    prices = {
        "STOCK:US:SPX DAY": [(1e9 + 60 * i, 1.0 + i, 2.0 + i, 0.5, 1.5 + i) for i in range(n)],
        "EMPTY DAY": [],
        "BAD</script> 1M": [(1.0, float("nan"), 2.0, 0.5, 1.5)],
    }
    page = write_html_report(rep, tmp_path / "report.html", prices, title="t").read_text(encoding="utf-8")
    body = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S)
    assert body is not None and "BAD</script>" not in body.group(1)  # "</" escaped inside the script
    data = json.loads(body.group(1))
    assert data["prices"]["STOCK:US:SPX DAY"] == [list(c) for c in prices["STOCK:US:SPX DAY"]]
    assert data["prices"]["EMPTY DAY"] == [] and data["prices"]["BAD</script> 1M"] == [[1.0, None, 2.0, 0.5, 1.5]]
    assert [e for _, e in data["equity"]] == pytest.approx([p.equity for p in rep.equity_curve])
    assert len(data["trades"]) == len(rep.trades) and data["title"] == "t"
    assert report_html.html_report(rep, prices, title="t") == page
