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
    titled_table,
)

if TYPE_CHECKING:  # imported when the command runs, so that --help stays fast
    from tuneprune.relevance.config import RelevanceStudyConfig
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
        "--checkpoint", type=Path, help="a model.pt written by 'tuneprune train --out' (default: train the train section)"
    )
    source.add_argument("--from-run", metavar="RUN_ID", help="the model.pt artifact of an MLflow run")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///$PWD/mlruns.db)")
    p.add_argument("--name", help="name of the study (default: the config's name or file name)")
    add_results_dir_argument(p, "plots and CSV")
    add_set_argument(p)
    p.add_argument("--json", action="store_true", help="print the curves as one JSON object")
    add_progress_argument(p)
    p.set_defaults(run=run)


def load_study_config(args: argparse.Namespace) -> RelevanceStudyConfig:
    """The validated study config; the train section's data must exist when the model is trained here."""
    from tuneprune.config import apply_overrides, load_yaml, validate
    from tuneprune.data import check_data_dir
    from tuneprune.relevance.config import RelevanceStudyConfig

    config = validate(RelevanceStudyConfig, apply_overrides(load_yaml(args.config), args.overrides))
    if args.checkpoint is None and args.from_run is None:
        check_data_dir(config.train.dataset, config.train.data_dir, config.train.download)
    return config


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


def model_source(args: argparse.Namespace) -> dict[str, str]:
    """Where the studied model comes from, as logged on the parent run."""
    if args.checkpoint is not None:
        return {"checkpoint": str(args.checkpoint.resolve())}
    if args.from_run is not None:
        return {"from_run": args.from_run}
    return {"trained": "train section"}


def run(args: argparse.Namespace) -> int:
    from tuneprune.data import load_dataset
    from tuneprune.progress import ProgressBar, say
    from tuneprune.relevance.report import write_report
    from tuneprune.relevance.study import run_study
    from tuneprune.relevance.tracking import StudyTracker
    from tuneprune.tracking import RunTracker, check_tracking_reachable, default_tracking_uri
    from tuneprune.runs import obtain_model
    from tuneprune.training import save_model

    config = load_study_config(args)
    name = args.name or config.name or args.config.stem
    uri = args.tracking_uri or default_tracking_uri()
    check_tracking_reachable(uri)
    study = StudyTracker(RunTracker(uri, config.experiment), name)
    progress = not args.no_progress
    if progress:
        say("loading the model ..." if args.checkpoint or args.from_run else "training the model ...")
    model, run_config = obtain_model(config.train, args.checkpoint, args.from_run, uri, progress)
    data = load_dataset(run_config)
    out = (args.results_dir / name).resolve()
    source = model_source(args)
    files = []
    if "trained" in source:  # kept, so that --from-run PARENT_RUN_ID can study it again
        config_dict = run_config.model_dump(mode="json")
        files.append(save_model(model, config_dict, out / "model.pt", data.num_classes, data.in_channels))
    study.start(config.model_dump(mode="json"), source)
    bar = None
    try:
        if progress:
            say(f"scoring channels by LRP ({config.relevance.rule}) on {config.relevance.eval_samples} samples ...")
            bar = ProgressBar("rankings", len(config.rankings) + len(config.deltas))

        def on_curve(ranking: str, rows: list) -> None:
            study.log_curve(ranking, rows)
            if bar is not None:
                bar.advance(f"{ranking}: acc {rows[-1]['acc']:.3f} at {rows[-1]['percentage']}%")

        result = run_study(model, run_config, data, config, on_curve=on_curve)
        files += write_report(result, out, f"{name} ({run_config.model}, {run_config.dataset})")
    except BaseException as err:
        study.fail(err)
        raise
    finally:
        if bar is not None:
            bar.close()
    study.finish(result, files)
    if args.json:
        print_json(
            {
                "name": name,
                "parent_run_id": study.parent_id,
                "results_dir": str(out),
                "baseline": result.baseline,
                "curves": result.curves,
            }
        )
    else:
        print_table(result, name)
        print_locations(out, uri, study.parent_id)
    return 0
