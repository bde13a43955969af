"""``tuneprune study STUDY.yaml``: methods x target sparsities x seeds as a grid search, and the paper's table."""

from __future__ import annotations

import argparse
from pathlib import Path

from tuneprune.cli.common import add_progress_argument, add_set_argument, print_locations, results_console, titled_table
from tuneprune.cli.search import add_cluster_arguments, cluster_options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "study", help="run a study (methods x targets x seeds) and print its mean ± std table", description=__doc__
    )
    p.add_argument("study", type=Path, help="study YAML (see studies/ and docs/studies.md)")
    add_cluster_arguments(p)
    p.add_argument("--storage", help="Optuna storage URL (default: sqlite:///$PWD/optuna.db)")
    add_progress_argument(p)
    add_set_argument(p)
    p.set_defaults(run=run)


def print_table(table) -> None:  # table: a StudyTable, imported lazily
    console = results_console()
    rich_table = titled_table(f"{table.study.name or 'study'}: test accuracy (%)")
    for column in table.header():
        rich_table.add_column(column, justify="left" if column in ("model", "method") else "right")
    for row in table.text_rows():
        rich_table.add_row(*(f"[bold]{v}[/bold]" if "*" in v else v for v in row))
    console.print(rich_table)
    console.print(table.legend())


def run(args: argparse.Namespace) -> int:
    import yaml

    from tuneprune.reports.study_table import study_table, write_study_outputs
    from tuneprune.search import prepare_search, run_search
    from tuneprune.search.study_config import STUDY_ARTIFACT, load_study
    from tuneprune.tracking import RunTracker

    study, document = load_study(args.study, args.overrides, args.name)
    options = {**cluster_options(args), "name": document["name"]}
    prepared = prepare_search(args.study, storage_url=args.storage, document=document, **options)
    prepared.extra_artifacts[STUDY_ARTIFACT] = yaml.safe_dump(study.model_dump(mode="json"), sort_keys=False)
    summary = run_search(prepared, progress=not args.no_progress)
    table = study_table(study.model_copy(update={"name": prepared.name}), summary.trials)
    tracker = RunTracker(prepared.tracking_uri, study.experiment)
    for path in write_study_outputs(table, summary.results_dir):
        tracker.log_artifact(summary.parent_run_id, path, "study")
    print_table(table)
    print(f"table:    {summary.results_dir / 'study.md'} (CSV: study.csv, plot: study.png)")
    print_locations(summary.results_dir, summary.tracking_uri, summary.parent_run_id, summary.storage_url, summary.name)
    return 0
