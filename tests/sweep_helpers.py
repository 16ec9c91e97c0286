"""Task functions for the sweep tests, importable by Dask worker processes (they share the tests' sys.path)."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from aitrados.sweep import run_backtest

#: The label (suffix) of the run whose worker is killed on its first attempt.
KILL_LABEL = "fast=10-slow=20"


def killing_run(spec: dict[str, Any], base: dict[str, Any], plugins: list[str] | None, out_dir: str) -> dict[str, Any]:
    """``run_backtest``, except that the first attempt of the run ending in KILL_LABEL kills its own worker
    process (SIGKILL, as an OOM killer would) after writing a marker file with the worker's pid."""
    marker = Path(out_dir) / "killed.pid"
    if spec["label"].endswith(KILL_LABEL) and not marker.exists():
        marker.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    row = run_backtest(spec, base, plugins, out_dir)
    row["pid"] = os.getpid()
    return row
