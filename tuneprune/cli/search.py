"""``tuneprune search SPACE.yaml``: a Ray Tune + Optuna search, tracked in MLflow."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Any

from tuneprune.cli.common import (
    add_progress_argument,
    add_results_dir_argument,
    add_set_argument,
    print_locations,
    results_console,
    run_name,
    titled_table,
)


def add_cluster_arguments(p: argparse.ArgumentParser) -> None:
    """--name, --address, --tracking-uri, --results-dir and --resume of the commands that run on Ray."""
    p.add_argument("--name", type=run_name, help="name of the search (default: the space's name or file name)")
    p.add_argument("--address", help="join an existing Ray cluster ('auto' or HOST:PORT); default: start a local Ray")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///$PWD/mlruns.db)")
    add_results_dir_argument(p, "trial checkpoints and summaries")
    p.add_argument(
        "--resume", action="store_true", help="continue an interrupted run of the same name (exit 2 if there is none)"
    )


def cluster_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments :func:`add_cluster_arguments` gives ``prepare_search`` and ``prepare_evolution``."""
    return {key: getattr(args, key) for key in ("name", "tracking_uri", "results_root", "address", "resume")}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="run a hyperparameter search over a YAML search space", description=__doc__)
    p.add_argument("space", type=Path, help="search space YAML (see search_spaces/)")
    add_cluster_arguments(p)
    p.add_argument(
        "--storage", help="Optuna storage URL (default: sqlite:///$PWD/optuna.db; postgresql://... on a cluster)"
    )
    p.add_argument("--num-samples", type=int, help="trials per grid point (overrides the space)")
    p.add_argument(
        "--join", action="store_true", help="one of several drivers of one search: start it, or join it if it exists"
    )
    add_progress_argument(p)
    add_set_argument(p)
    p.set_defaults(run=run)


def print_summary(summary) -> None:
    console = results_console()
    names = list(summary.objectives)
    title = "Pareto set" if len(names) > 1 else "best trials"
    table = titled_table(f"{summary.name}: {title}")
    for column in ("trial", "grid", "params", *names):
        table.add_column(column, overflow="fold")
    for entry in summary.best:
        grid = " ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in entry["grid"].items())
        params = " ".join(
            f"{k.rsplit('.', 1)[-1]}={f'{v:.4g}' if isinstance(v, float) else v}" for k, v in entry["params"].items()
        )
        table.add_row(entry["key"], grid, params, *(f"{entry['values'][n]:.4f}" for n in names))
    console.print(table)
    states = Counter(trial["state"] for trial in summary.trials)
    console.print("trials: " + ", ".join(f"{v} {k.lower()}" for k, v in sorted(states.items())))
    for trial in summary.trials:
        if trial["state"] == "FAIL":
            console.print(f"  failed {trial['key']}: {trial.get('error') or 'worker error'}")
    print_locations(summary.results_dir, summary.tracking_uri, summary.parent_run_id, summary.storage_url, summary.name)


def run(args: argparse.Namespace) -> int:
    from tuneprune.search import prepare_search, run_search

    options = {"storage_url": args.storage, "num_samples": args.num_samples, "join": args.join, **cluster_options(args)}
    prepared = prepare_search(args.space, args.overrides, **options)
    summary = run_search(prepared, progress=not args.no_progress)
    print_summary(summary)
    return 0
