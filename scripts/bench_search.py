"""Harness efficiency of a search: how much of the wall time the trials spend training.

    efficiency = sum over trials of their epoch times / (search wall time x concurrent slots)

Runs ``search_spaces/digits_demo.yaml`` (or ``--space``) on a fresh local Ray in a
temporary directory; Ray start-up and teardown are timed separately and not charged to
the search. Target: >= 0.80 on 2 CPUs.

    .venv/bin/python scripts/bench_search.py [--space PATH] [--set k=v ...]
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", type=Path, default=ROOT / "search_spaces" / "digits_demo.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--cpus", type=int, default=2)
    args = parser.parse_args()
    for var, value in (("RAY_USAGE_STATS_ENABLED", "0"), ("MLFLOW_DISABLE_TELEMETRY", "true"), ("DO_NOT_TRACK", "1")):
        os.environ.setdefault(var, value)

    import ray
    from mlflow.tracking import MlflowClient
    from rich.console import Console
    from rich.table import Table

    from tuneprune.search import prepare_search, run_search

    with tempfile.TemporaryDirectory() as tmp:
        prepared = prepare_search(
            args.space,
            args.overrides,
            name="bench",
            tracking_uri=f"sqlite:///{tmp}/mlruns.db",
            storage_url=f"sqlite:///{tmp}/optuna.db",
            results_root=Path(tmp) / "runs",
        )
        t0 = time.perf_counter()
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        t_ray = time.perf_counter() - t0
        t0 = time.perf_counter()
        summary = run_search(prepared, progress=False)
        t_search = time.perf_counter() - t0
        t0 = time.perf_counter()
        ray.shutdown()
        t_down = time.perf_counter() - t0

        client = MlflowClient(summary.tracking_uri)
        work = sum(
            m.value for t in summary.trials if t["mlflow_run_id"] for m in client.get_metric_history(t["mlflow_run_id"], "epoch_time")
        )
    space = prepared.space
    slots = min(space.max_concurrent, int(args.cpus / space.resources.cpu))
    efficiency = work / (t_search * slots)

    table = Table(title=f"search harness efficiency ({args.space.name}, {len(summary.trials)} trials, {args.cpus} CPUs)")
    for col in ("ray start s", "search wall s", "ray teardown s", "trial time s", "slots", "efficiency", "target"):
        table.add_column(col, justify="right")
    table.add_row(f"{t_ray:.1f}", f"{t_search:.1f}", f"{t_down:.1f}", f"{work:.1f}", str(slots), f"{efficiency:.2f}", ">= 0.80")
    Console().print(table)


if __name__ == "__main__":
    main()
