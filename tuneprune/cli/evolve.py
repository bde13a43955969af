"""``tuneprune evolve SPACE.yaml``: pymoo evolution of Stochastic Pruning's sigma and rate on Ray (formulas §5)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from tuneprune.cli.common import add_progress_argument, add_set_argument, print_locations, results_console, titled_table
from tuneprune.cli.search import add_cluster_arguments, cluster_options

if TYPE_CHECKING:
    from tuneprune.evolution import EvolutionSummary


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evolve", help="evolve stochastic pruning's accuracy-vs-sparsity front with pymoo on Ray", description=__doc__
    )
    p.add_argument("space", type=Path, help="evolution space YAML (see search_spaces/evolve_digits.yaml)")
    add_cluster_arguments(p)
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--checkpoint", type=Path, help="dense model file written by 'tuneprune train --out' (default: train it now)"
    )
    source.add_argument(
        "--from-run",
        metavar="RUN_ID",
        help="use the model.pt artifact of this MLflow run as the dense model (in --tracking-uri, else ./mlruns.db or "
        "a store a search recorded)",
    )
    add_progress_argument(p)
    add_set_argument(p)
    p.set_defaults(run=run)


def print_front(summary: EvolutionSummary) -> None:
    console = results_console()
    table = titled_table(f"{summary.name}: Pareto front (validation accuracy, median of {summary.samples} samples)")
    metrics = ("model sparsity", "pruned-layers sparsity", "accuracy", "deterministic")
    for column in ("gen", "#", "sigma", *summary.rate_names, *metrics):
        table.add_column(column, justify="right", overflow="fold")
    for row in summary.front:
        rates = (f"{row[n]:.4f}" for n in summary.rate_names)
        compared = row["deterministic_accuracy"]
        table.add_row(
            str(row["generation"]), str(row["index"]), f"{row['sigma']:.2e}", *rates,
            f"{row['sparsity']:.4f}", f"{row['pruned_layers_sparsity']:.4f}", f"{row['accuracy']:.4f}",
            "failed" if compared is None else f"{compared:.4f}",
        )  # fmt: skip
    console.print(table)
    if failed := sum(row["deterministic_accuracy"] is None for row in summary.front):
        console.print(f"deterministic pruning failed at {failed} of {len(summary.front)} front points (no accuracy)")
    hv = summary.hypervolume[-1] if summary.hypervolume else 0.0
    console.print(f"dense: val_acc {summary.dense['val_acc']:.4f}, test_acc {summary.dense['test_acc']:.4f}")
    console.print(
        f"evaluated {summary.evaluated} individuals, {summary.failed} failed; hypervolume {hv:.4f} (reference {summary.reference_point})"
    )
    print_locations(summary.results_dir, summary.tracking_uri, summary.parent_run_id, report_source=summary.name)


def run(args: argparse.Namespace) -> int:
    from tuneprune.evolution import prepare_evolution, run_evolution

    prepared = prepare_evolution(
        args.space, args.overrides, checkpoint=args.checkpoint, from_run=args.from_run, **cluster_options(args)
    )
    summary = run_evolution(prepared, progress=not args.no_progress)
    print_front(summary)
    return 0
