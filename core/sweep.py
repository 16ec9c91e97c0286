"""Parameter sweeps: one backtest per point of a grid, run in parallel on Dask ``distributed``.

``aitrados sweep --plugins sma_cross --grid sma_cross.fast=5,10,20 --grid sma_cross.slow=20,50,100``
expands the grid into runs (the cartesian product), submits each as one Dask task (a
``LocalCluster`` of worker processes on this machine by default, ``--scheduler
tcp://HOST:PORT`` for an existing cluster), gathers the metrics into one table sorted by a
chosen metric (terminal + CSV), and shows a progress bar while runs finish.

Each run is isolated: it runs the whole runtime in the worker process (:func:`run_backtest`)
with its own bus name, a private ipc folder, any free tcp ports (port 0) and its own report
folder, so runs never share a port or a file. The settings travel to the workers as plain
JSON data without the secret key (a worker reads its own ``AITRADOS_SECRET_KEY`` if it needs
one); the market data is always the local replay. A worker that dies mid-run (killed, out of
memory) loses nothing: the scheduler runs that task again on another worker.

Dask is an optional dependency: ``pip install 'aitrados[sweep]'``.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import itertools
import json
import math
import os
import re
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Top-level settings sections a grid key may address directly (``trading.broker.commission_bps=...``);
#: any other first component is a plugin name (``sma_cross.fast`` = ``plugins.sma_cross.fast``).
SETTINGS_SECTIONS = ("bus", "marketdata", "trading", "plugin_host", "plugins")

#: Keys of a result row that are not metrics.
ROW_KEYS = ("run", "report", "error")

RunFn = Callable[[dict[str, Any], dict[str, Any], list[str] | None, str], dict[str, Any]]


@dataclass(frozen=True)
class SweepRun:
    """One point of the grid: its label, its grid values and the settings it overrides."""

    label: str
    params: dict[str, Any]
    overrides: dict[str, Any] = field(default_factory=dict)

    def spec(self) -> dict[str, Any]:
        """The run as plain data for a worker."""
        return {"label": self.label, "params": self.params, "overrides": self.overrides}


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_grid(items: Sequence[str]) -> list[tuple[str, list[Any]]]:
    """``["sma_cross.fast=5,10"]`` → ``[("sma_cross.fast", [5, 10])]``; values are JSON when they parse.

    :raises ValueError: an item without ``=``, a key without a dot, an empty or repeated key or value
    """
    out: list[tuple[str, list[Any]]] = []
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip()
        if not sep or not key or "." not in key or key.startswith(".") or key.endswith("."):
            raise ValueError(f"bad --grid {item!r}: expected PLUGIN.SETTING=V1,V2,... (e.g. sma_cross.fast=5,10,20)")
        vals = [_value(v.strip()) for v in values.split(",") if v.strip()]
        if not vals:
            raise ValueError(f"bad --grid {item!r}: no values after '='")
        if len({json.dumps(v, sort_keys=True) for v in vals}) != len(vals):
            raise ValueError(f"bad --grid {item!r}: a value is repeated")
        if any(k == key for k, _ in out):
            raise ValueError(f"--grid {key} is given twice; put all its values in one --grid")
        out.append((key, vals))
    return out


def settings_path(key: str) -> list[str]:
    """Where a grid key lands in the settings: ``sma_cross.fast`` → ``["plugins", "sma_cross", "fast"]``."""
    parts = key.split(".")
    return parts if parts[0] in SETTINGS_SECTIONS else ["plugins", *parts]


def _set(d: dict[str, Any], path: list[str], value: Any) -> None:
    for p in path[:-1]:
        nxt = d.get(p)
        if not isinstance(nxt, dict):
            nxt = d[p] = {}
        d = nxt
    d[path[-1]] = value


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """A copy of *base* with *over* merged in (nested dicts merged, anything else replaced)."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _slug(v: Any) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(v)).strip("_") or "x"


def expand(grid: Sequence[tuple[str, list[Any]]]) -> list[SweepRun]:
    """Every combination of the grid's values, in order (the last key varies fastest)."""
    runs = []
    keys = [k for k, _ in grid]
    for i, combo in enumerate(itertools.product(*(vals for _, vals in grid))):
        overrides: dict[str, Any] = {}
        for k, v in zip(keys, combo):
            _set(overrides, settings_path(k), v)
        label = f"{i:03d}-" + "-".join(f"{k.split('.')[-1]}={_slug(v)}" for k, v in zip(keys, combo))
        runs.append(SweepRun(label=label, params=dict(zip(keys, combo)), overrides=overrides))
    return runs


#: How pydantic dumps a ``SecretStr`` in JSON mode.
MASKED = "**********"


def _drop_masked(d: dict[str, Any]) -> dict[str, Any]:
    return {k: _drop_masked(v) if isinstance(v, dict) else v for k, v in d.items() if v != MASKED}


def base_settings(settings: Any) -> dict[str, Any]:
    """The caller's effective settings as plain JSON data for the workers, without any secret
    (the secret key, an LLM API key...: a worker falls back to its own environment for those)."""
    return _drop_masked(settings.model_dump(mode="json"))


# ---------------------------------------------------------------- one run (on a worker)
def run_settings(spec: dict[str, Any], base: dict[str, Any], ipc_dir: str, report_dir: str) -> Any:
    """The settings of one isolated run: *base* with the run's overrides, a bus of its own, the local replay."""
    from .settings import load_settings

    d = deep_merge(base, spec.get("overrides", {}))
    d["bus"] = {**d.get("bus", {}), "name": f"sweep-{uuid.uuid4().hex[:12]}", "ipc_dir": ipc_dir,
                "rpc_frontend_port": 0, "rpc_backend_port": 0, "sub_port": 0, "pub_port": 0,
                "service_token_file": None}  # the token goes beside the run's own ipc files
    d["marketdata"] = {**d.get("marketdata", {}), "provider": "replay", "replay_port": 0, "replay_speed": 0}
    d["trading"] = {**d.get("trading", {}), "report_dir": report_dir}
    return load_settings(**d)


def run_backtest(spec: dict[str, Any], base: dict[str, Any], plugins: list[str] | None, out_dir: str) -> dict[str, Any]:
    """Run one backtest of the sweep in this process and return its result row.

    The run's terminal output and log go to ``<out_dir>/runs/<label>/run.log``; its report to
    the same folder. Returns ``{"run": label, **grid values, **metrics, "report": folder}``.

    :raises RuntimeError: the run failed (the message says why; the log has the details)
    """
    import msgspec
    from loguru import logger

    from .log import LOG_FORMAT, register_secret, scrub_secrets
    from .runtime import Runtime

    label = spec["label"]
    folder = Path(out_dir) / "runs" / label
    folder.mkdir(parents=True, exist_ok=True)
    ipc_dir = tempfile.mkdtemp(prefix="ats-", dir="/tmp")  # ipc paths must stay short
    try:
        with open(folder / "run.log", "w", encoding="utf-8") as log, \
                contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            s = run_settings(spec, base, ipc_dir, str(folder))
            register_secret(s.secret_key.get_secret_value() if s.secret_key else None)
            if _in_dask_worker():  # the worker's own terminal stays quiet: the run logs to its file
                logger.remove()
            sink = logger.add(log, level=s.log_level.upper(), format=LOG_FORMAT, filter=scrub_secrets)
            try:
                rt = Runtime(s, plugins=plugins, strict=True, exit_at_end=True)
                rt.start()
                code = rt.wait()
            finally:
                logger.remove(sink)
            report = rt.trading.finished if rt.trading is not None else None
        if code != 0 or report is None:
            raise RuntimeError(f"run {label} failed (exit code {code}); see {folder / 'run.log'}")
        metrics = msgspec.to_builtins(report.metrics)
        row: dict[str, Any] = {"run": label, **spec.get("params", {})}
        row.update({k: v for k, v in metrics.items() if isinstance(v, (int, float, str)) or v is None})
        row["report"] = str(rt.report_paths.get("folder", folder))
        return row
    finally:
        shutil.rmtree(ipc_dir, ignore_errors=True)


def _in_dask_worker() -> bool:
    """Whether this code runs as a task of a Dask worker."""
    if "distributed" not in sys.modules:
        return False
    from distributed import get_worker

    try:
        get_worker()
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------- the sweep
@dataclass
class SweepResult:
    """The rows of the runs that finished and the errors of those that did not (by label)."""

    rows: list[dict[str, Any]]
    errors: dict[str, str]


def run_serial(runs: Sequence[SweepRun], base: dict[str, Any], plugins: list[str] | None, out_dir: str,
               run_fn: RunFn = run_backtest) -> SweepResult:
    """The same runs one by one in this process (the reference a sweep must equal)."""
    rows, errors = [], {}
    for r in runs:
        try:
            rows.append(run_fn(r.spec(), base, plugins, out_dir))
        except Exception as exc:  # noqa: BLE001 - one bad run must not lose the others
            errors[r.label] = f"{type(exc).__name__}: {exc}"
    return SweepResult(rows, errors)


def local_cluster(n_workers: int | None = None) -> Any:
    """A Dask ``LocalCluster`` of worker processes on 127.0.0.1 (one thread each, no dashboard, any free port)."""
    from distributed import LocalCluster

    n = n_workers or os.cpu_count() or 1
    return LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                        scheduler_port=0, dashboard_address=None)


def run_sweep(runs: Sequence[SweepRun], base: dict[str, Any], plugins: list[str] | None, out_dir: str, *,
              scheduler: str | None = None, n_workers: int | None = None, progress: bool = False,
              retries: int = 1, run_fn: RunFn = run_backtest) -> SweepResult:
    """Run *runs* in parallel on Dask and gather their rows (in the order of *runs*).

    :param scheduler: address of an existing scheduler (``tcp://HOST:PORT``); None = a local cluster
    :param n_workers: worker processes of the local cluster (default: one per CPU)
    :param progress: show a progress bar on stderr
    :param retries: extra attempts of a run that raised (a run whose worker died is re-run by the
        scheduler in any case, up to ``distributed.scheduler.allowed-failures`` times)
    :param run_fn: the function run per task (importable by the workers)
    """
    try:
        from distributed import Client, as_completed
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise RuntimeError("aitrados sweep needs Dask: pip install 'aitrados[sweep]'") from exc

    Path(out_dir).mkdir(parents=True, exist_ok=True)
    out = str(Path(out_dir).resolve())
    cluster = None if scheduler else local_cluster(n_workers)
    try:
        with Client(scheduler or cluster) as client:
            futures = {client.submit(run_fn, r.spec(), base, plugins, out, key=f"aitrados-run-{r.label}-{uuid.uuid4().hex[:8]}",
                                     pure=False, retries=retries): r.label for r in runs}
            rows: dict[str, dict[str, Any]] = {}
            errors: dict[str, str] = {}
            with _progress_bar(len(futures), progress) as advance:
                for fut in as_completed(futures):
                    label = futures[fut]
                    try:
                        rows[label] = fut.result()
                    except Exception as exc:  # noqa: BLE001 - reported per run, the others are kept
                        errors[label] = f"{type(exc).__name__}: {exc}"
                    advance(label)
    finally:
        if cluster is not None:
            cluster.close()
    return SweepResult([rows[r.label] for r in runs if r.label in rows], errors)


@contextlib.contextmanager
def _progress_bar(total: int, show: bool) -> Any:
    """A rich progress bar on stderr; yields ``advance(label)``."""
    if not show:
        yield lambda label: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.description}"), console=Console(file=sys.stderr)) as bar:
        task = bar.add_task("", total=total)
        yield lambda label: bar.update(task, advance=1, description=label)


# ---------------------------------------------------------------- the table
def metric_names() -> list[str]:
    """Metrics a sweep can be sorted by (the numeric fields of the report's metrics)."""
    from .trading.metrics import Metrics

    hints = Metrics.__annotations__
    return [f for f in Metrics.__struct_fields__ if any(t in str(hints.get(f, "")) for t in ("float", "int"))]


def sort_rows(rows: list[dict[str, Any]], metric: str, ascending: bool = False) -> list[dict[str, Any]]:
    """*rows* sorted by *metric* (best first: descending unless *ascending*); missing or NaN values last."""
    def bad(r: dict[str, Any]) -> bool:
        v = r.get(metric)
        return not isinstance(v, (int, float)) or math.isnan(v)

    good = sorted((r for r in rows if not bad(r)), key=lambda r: r[metric], reverse=not ascending)
    return good + [r for r in rows if bad(r)]


def table_columns(rows: list[dict[str, Any]], metric: str) -> list[str]:
    """Columns of the terminal table: run, grid values, the sort metric, then a few headline metrics."""
    if not rows:
        return []
    params = [k for k in rows[0] if k not in ROW_KEYS and "." in k]
    head = ["total_return", "sharpe", "max_drawdown", "trades", "final_equity"]
    cols = ["run", *params, metric] + [h for h in head if h != metric and h in rows[0]]
    return cols


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.2f}" if abs(v) >= 1e4 else f"{v:.4g}"
    return "" if v is None else str(v)


def format_table(rows: list[dict[str, Any]], metric: str) -> str:
    """A plain text table of *rows* (already sorted)."""
    cols = table_columns(rows, metric)
    if not cols:
        return "(no finished runs)"
    cells = [[_fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths))]
    lines += ["  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(row, widths))) for row in cells]
    return "\n".join(lines)


def write_csv(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """All columns of *rows* into a CSV file (grid values and every metric)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    with p.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    return p
