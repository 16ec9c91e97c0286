"""examples/isolated_strategy.py: a CPU-burning strategy in its own process while the middleware answers every ping."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "isolated_strategy.py"


@pytest.mark.timeout(90)
def test_isolated_cpu_heavy_strategy_keeps_the_middleware_responsive(monkeypatch) -> None:
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
    spec = importlib.util.spec_from_file_location("isolated_strategy_example", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    r = mod.measure(isolated=True, seconds=2.0, ping_timeout=1.0)
    # the strategy really ran, in another process, and burned CPU there
    assert r["burned"] >= 5
    assert len(r["pids"]) == 1 and os.getpid() not in r["pids"]
    assert r["cpu"] >= 0.1  # CPU seconds the worker spent between its first and last bar
    # the middleware answered every ping meanwhile (1 s timeout each, a ping every ~5 ms)
    assert r["timeouts"] == 0 and len(r["latencies"]) >= 50
