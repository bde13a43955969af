"""``tuneprune relevance CONFIG.yaml``: LRP vs parameter channel pruning curves (formulas §6), tracked in MLflow."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from tuneprune.cli.common import (
    add_progress_argument,
    add_results_dir_argument,
    add_set_argument,
    print_json,
    print_locations,
    results_console,
    run_name,
    titled_table,
)

if TYPE_CHECKING:  # imported when the command runs, so that --help stays fast
    from tuneprune.relevance.study import StudyResult


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "relevance",
        help="prune convolution channels by relevance, parameters, random, combined and delta mixes",
        description=__doc__,
    )
    p.add_argument("config", type=Path, help="relevance study YAML (see configs/relevance_*.yaml)")
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--checkpoint",
        type=Path,
        help="a model.pt written by 'tuneprune train --out' (default: train the train section)",
    )
    source.add_argument(
        "--from-run",
        metavar="RUN_ID",
        help="the model.pt artifact of an MLflow run (in --tracking-uri, else ./mlruns.db or a store a search recorded)",
    )
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///$PWD/mlruns.db)")
    p.add_argument("--name", type=run_name, help="name of the study (default: the config's name or file name)")
    add_results_dir_argument(p, "plots and CSV")
    add_set_argument(p)
    p.add_argument("--json", action="store_true", help="print the curves as one JSON object")
    add_progress_argument(p)
    p.set_defaults(run=run)


def print_table(result: StudyResult, name: str) -> None:
    """Accuracy of every curve at every percentage."""
    from rich import box

    percentages = [int(row["percentage"]) for row in next(iter(result.curves.values()))]
    title = f"{name}: test accuracy by % of channels pruned (unpruned {result.baseline['acc']:.4f})"
    table = titled_table(title, box=box.SIMPLE)
    table.add_column("ranking", no_wrap=True)
    for p in percentages:
        table.add_column(str(p), justify="right", no_wrap=True)
    for ranking, curve in result.curves.items():
        table.add_row(ranking, *(f"{row['acc']:.3f}" for row in curve))
    results_console().print(table)


def run(args: argparse.Namespace) -> int:
    from tuneprune.runs.relevance_study import run_relevance_study

    study = run_relevance_study(
        args.config, args.overrides, checkpoint=args.checkpoint, from_run=args.from_run, tracking_uri=args.tracking_uri,
        name=args.name, results_root=args.results_root, progress=not args.no_progress,
    )  # fmt: skip
    result = study.result
    if args.json:
        where = {"name": study.name, "parent_run_id": study.parent_run_id, "results_dir": str(study.results_dir)}
        print_json({**where, "baseline": result.baseline, "curves": result.curves})
    else:
        print_table(result, study.name)
        print_locations(study.results_dir, study.tracking_uri, study.parent_run_id)
    return 0
