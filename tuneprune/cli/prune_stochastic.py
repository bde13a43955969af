"""``tuneprune prune-stochastic CONFIG.yaml``: one Stochastic Pruning point (sigma, r, n) against deterministic pruning (formulas §5)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from tuneprune.cli.common import (
    add_progress_argument,
    add_set_argument,
    output_directory,
    print_json,
    results_console,
    titled_table,
)

if TYPE_CHECKING:
    from tuneprune.stochastic.pipeline import StochasticReport


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prune-stochastic",
        help="prune a dense model stochastically and compare with deterministic pruning",
        description=__doc__,
    )
    p.add_argument("config", type=Path, help="stochastic pruning config YAML (see configs/stochastic_digits.yaml)")
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--checkpoint", type=Path, help="dense model file written by 'tuneprune train --out' (default: train it now)"
    )
    source.add_argument("--from-run", metavar="RUN_ID", help="use the model.pt artifact of this MLflow run")
    p.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI for --from-run (default: the store holding the run: ./mlruns.db or one a search recorded)",
    )
    p.add_argument(
        "--out",
        type=output_directory,
        help="directory for report.json and the feature-variance table and plot (default: runs/<config name>)",
    )
    add_set_argument(p)
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    add_progress_argument(p)
    p.set_defaults(run=run)


def print_report(report: StochasticReport, out: Path) -> None:
    console = results_console()
    table = titled_table(
        f"Stochastic Pruning: sigma={report.sigma:g} rate={report.rate:g} samples={report.samples}; sparsity of the pruned "
        f"layers {report.pruned_layers_sparsity:.4f}, of the whole model {report.model_sparsity:.4f}"
    )
    for column in ("model", "val_acc", "test_acc"):
        table.add_column(column)
    rows = [
        ("dense", report.dense),
        ("deterministic", report.deterministic),
        (f"stochastic (sample {report.best_sample})", report.stochastic),
    ]
    rows += [(f"{label} + fine-tuning", metrics) for label, metrics in report.finetuned.items()]
    for label, metrics in rows:
        table.add_row(label, f"{metrics['val_acc']:.4f}", f"{metrics['test_acc']:.4f}")
    console.print(table)
    if report.feature_variance:
        labels = list(next(iter(report.feature_variance.values())))
        variance = titled_table("feature variance per layer (formulas §5)")
        for column in ("layer", *labels):
            variance.add_column(column)
        for layer, values in report.feature_variance.items():
            variance.add_row(layer, *(f"{values[label]:.4g}" for label in labels))
        console.print(variance)
    console.print(f"results: {out}")


def run(args: argparse.Namespace) -> int:
    from tuneprune.output.summaries import summary_json
    from tuneprune.stochastic import prune_stochastic
    from tuneprune.tracking import check_tracking_reachable

    if args.from_run and args.tracking_uri:  # within seconds: a server out of reach is retried for minutes
        check_tracking_reachable(args.tracking_uri)
    report, out = prune_stochastic(
        args.config, args.overrides, checkpoint=args.checkpoint, from_run=args.from_run,
        tracking_uri=args.tracking_uri, out=args.out, progress=not args.no_progress,
    )  # fmt: skip
    if args.json:
        print_json({**summary_json(report), "results_dir": str(out)})
    else:
        print_report(report, out)
    return 0
