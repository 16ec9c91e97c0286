"""The ``aitrados sweep`` command: a grid of backtests in parallel on Dask (see :mod:`aitrados.sweep`)."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import Any

Handler = Any


def cmd_sweep(args: argparse.Namespace, settings: Any) -> int:
    """Run one backtest per point of a parameter grid in parallel on Dask, and print the table of results.

    Example: aitrados sweep --plugins sma_cross --grid sma_cross.fast=5,10,20 --grid sma_cross.slow=20,50,100
    """
    from . import sweep
    from .pluginhost.cli import plugin_names

    grid = sweep.parse_grid(args.grid)
    metrics = sweep.metric_names()
    if args.metric not in metrics:
        raise ValueError(f"unknown --metric {args.metric!r}; one of: {', '.join(metrics)}")
    if args.data:
        missing = [f for f in args.data if not Path(f).is_file()]
        if missing:
            raise ValueError(f"--data file not found: {', '.join(missing)}")
        settings.marketdata.replay_bar_files = [str(Path(f).resolve()) for f in args.data]
        settings.marketdata.replay_bundled = False
    plugins = plugin_names(args.plugins) or None
    runs = sweep.expand(grid)
    out = Path(args.out or Path("aitrados-sweep") / dt.datetime.now(dt.UTC).strftime("sweep-%Y%m%dT%H%M%SZ"))
    base = sweep.base_settings(settings)
    print(f"sweep: {len(runs)} runs on {args.scheduler or 'a local Dask cluster'}; results in {out.resolve()}",
          file=sys.stderr, flush=True)
    res = sweep.run_sweep(runs, base, plugins, str(out), scheduler=args.scheduler, n_workers=args.workers,
                          progress=not args.no_progress, retries=args.retries)
    rows = sweep.sort_rows(res.rows, args.metric, args.ascending)
    csv_path = sweep.write_csv(rows, out / "results.csv")
    print(sweep.format_table(rows, args.metric))
    print(f"results: {csv_path.resolve()} ({len(rows)} runs, sorted by {args.metric}"
          f"{' ascending' if args.ascending else ', best first'})")
    for label, err in res.errors.items():
        print(f"error: run {label} failed: {err}", file=sys.stderr)
    return 1 if res.errors else 0


def add_commands(subparsers: Any, handlers: dict[str, Handler], argv: Any = ()) -> None:
    """Add the ``sweep`` subcommand to the ``aitrados`` parser (*argv*, the command line, is not needed)."""
    sp = subparsers.add_parser("sweep", help="run a grid of backtests in parallel on Dask (aitrados[sweep])",
                               description=cmd_sweep.__doc__)
    sp.add_argument("--plugins", help="comma-separated plugins to load in each run (as for `aitrados run`)")
    sp.add_argument("--grid", action="append", default=[], required=True, metavar="PLUGIN.SETTING=V1,V2,...",
                    help="values of one setting (repeat for more; runs = every combination). A first part that "
                         "is a settings section (trading, marketdata, ...) addresses that section instead")
    sp.add_argument("--data", action="append", default=[], metavar="FILE",
                    help="bar file(s) to replay instead of the bundled data (repeatable; workers must see the path)")
    sp.add_argument("--metric", default="total_return", help="sort the table by this metric (default total_return)")
    sp.add_argument("--ascending", action="store_true", help="smallest first (e.g. for max_drawdown)")
    sp.add_argument("--scheduler", help="tcp://HOST:PORT of an existing Dask scheduler (default: a LocalCluster)")
    sp.add_argument("--workers", type=int, help="worker processes of the local cluster (default: one per CPU)")
    sp.add_argument("--retries", type=int, default=1, help="extra attempts of a run that fails (default 1)")
    sp.add_argument("--out", help="folder for results.csv and each run's report (default aitrados-sweep/sweep-<UTC time>)")
    sp.add_argument("--no-progress", action="store_true", help="no progress bar")
    handlers["sweep"] = cmd_sweep
