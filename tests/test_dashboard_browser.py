"""The dashboard and the HTML report in a real headless browser (Debian's chromium via selenium).

Skips, saying why, only when chromium or chromedriver is not installed (`.ci/install-browser`
installs both). Screenshots go to ``test-artifacts/`` at the repository root.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aitrados.bus.errors import ServiceUnavailableError
from aitrados.runtime import Runtime

from conftest import ROOT
from test_trading_runtime import SYM, make_runtime

pytestmark = pytest.mark.timeout(180)
ARTIFACTS = ROOT / "test-artifacts"


def _browser_paths() -> tuple[str, str] | None:
    chrome = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    return (chrome, driver) if chrome and driver else None


@pytest.fixture
def browser() -> Iterator[Any]:
    paths = _browser_paths()
    if paths is None:
        pytest.skip("no chromium and chromedriver on PATH: run .ci/install-browser (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is a test dependency: pip install -e '.[test]'")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = paths[0]
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,1300"):
        opts.add_argument(a)
    drv = webdriver.Chrome(options=opts, service=Service(executable_path=paths[1]))
    drv.set_page_load_timeout(60)
    drv.set_script_timeout(30)
    try:
        yield drv
    finally:
        drv.quit()


def wait_for(cond: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """Poll *cond* until truthy (bounded); fails naming *what*."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def call(rt: Runtime, service: str, method: str, role: str | None = None, **params: object) -> Any:
    """An RPC call to the runtime, retried while its worker reconnects (heartbeats lost on a loaded machine)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            with rt.mw.rpc_client(timeout=10, role=role) as c:
                return c.call(service, method, **params)
        except ServiceUnavailableError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def submit_one(rt: Runtime) -> dict:
    """Submit one market buy as a strategy attached from outside; returns its first order event."""
    session = call(rt, "trading", "attach", role="service", strategy="ext")["session"]
    ev = call(rt, "trading", "submit", role="service", strategy="ext", session=session,
              intent={"full_symbol": SYM, "side": "buy", "quantity": 1})
    call(rt, "trading", "detach", role="service", strategy="ext", session=session)
    return ev[0]


def text(drv: Any, id_: str) -> str:
    return drv.execute_script(f"return document.getElementById('{id_}').textContent")


@pytest.fixture
def rt(ipc_dir: str, tmp_path: Path) -> Iterator[Runtime]:
    r = make_runtime(ipc_dir, str(tmp_path / "report"), dashboard=0)
    try:
        yield r
    finally:
        r.stop()


def test_live_page_grows_trips_the_kill_switch_and_the_report_shows_trades(rt: Runtime, browser: Any) -> None:
    d = rt.dashboard
    browser.get(d.login_url)
    wait_for(lambda: text(browser, "conn") == "live", "the page's WebSocket")
    before = int(wait_for(lambda: text(browser, "candle-count") != "0" and text(browser, "candle-count"),
                          "the hydrated history (chart window backfill)"))
    assert int(text(browser, "marker-count")) == 0  # the clock has not started: no fill yet
    rt.start_replay()
    wait_for(lambda: int(text(browser, "marker-count")) >= 2 and int(text(browser, "candle-count")) > before + 100,
             "candles and fill markers to grow")
    assert rt.wait_replay(60), "the replay did not end"
    wait_for(lambda: "(ended)" in text(browser, "clock"), "the replay clock to show the end")
    wait_for(lambda: "sma_cross" in text(browser, "strategies") and "SMA5" in text(browser, "strategies"),
             "the strategy's own state")
    # the services and topics tables follow the status poll and the router's topic snapshot, which lag
    wait_for(lambda: "trading" in text(browser, "services") and "ohlc." in text(browser, "topics"),
             "the services and topics tables")
    candles = int(text(browser, "candle-count"))
    assert candles > before and int(text(browser, "marker-count")) >= 2
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "dashboard.png"))

    # the kill switch, from the page, with its confirmation
    assert text(browser, "kill-state") == "armed"
    browser.find_element("id", "trip-btn").click()
    wait_for(lambda: browser.execute_script("return document.getElementById('confirm').open"), "the confirmation")
    browser.find_element("id", "confirm-ok").click()
    wait_for(lambda: text(browser, "kill-state") == "TRIPPED", "the page to show the tripped switch")
    assert call(rt, "trading", "risk_state")["kill_switch"] is True
    assert submit_one(rt)["payload"]["status"] == "rejected"
    # cancelling the confirmation does nothing
    browser.find_element("id", "reset-btn").click()
    wait_for(lambda: browser.execute_script("return document.getElementById('confirm').open"), "the confirmation")
    browser.find_element("id", "confirm-cancel").click()
    time.sleep(0.5)  # not a correctness wait: gives a wrongly sent reset the chance to show up below
    assert call(rt, "trading", "risk_state")["kill_switch"] is True

    # the self-contained HTML report: trade markers on the price chart
    report = rt.report_paths["html"]
    trades = rt.trading.finished.trades
    sym_trades = [t for t in trades if t.full_symbol == SYM]
    expected = len(sym_trades) + sum(1 for t in sym_trades if t.exit_time is not None)
    browser.get(report.resolve().as_uri())
    wait_for(lambda: browser.execute_script("return document.body.dataset.markers"), "the report's markers")
    assert int(text(browser, "marker-count")) == expected > 0
    rows = browser.execute_script("return document.getElementById('trades').rows.length")
    assert rows == len(trades) + 1
    assert "total return" in text(browser, "metrics")
    browser.save_screenshot(str(ARTIFACTS / "report.png"))
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
