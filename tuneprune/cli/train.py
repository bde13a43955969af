"""``tuneprune train CONFIG.yaml``: one training run, dense or sparse."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tuneprune.cli.common import add_progress_argument, add_set_argument, output_directory, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="run one training run and print its final metrics", description=__doc__)
    p.add_argument("config", nargs="?", type=Path, help="run config YAML (defaults apply to missing keys)")
    add_set_argument(p)
    p.add_argument("--from-run", metavar="RUN_ID", help="re-run the exact configuration of an MLflow trial run")
    p.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI for --from-run (default: the store holding the run: ./mlruns.db or one a search recorded)",
    )
    p.add_argument("--out", type=output_directory, help="directory for checkpoints and the final model.pt")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt when it exists")
    p.add_argument("--json", action="store_true", help="print the final metrics as one JSON object")
    add_progress_argument(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from tuneprune.data import check_data_dir
    from tuneprune.runs import TrialSpec, execute
    from tuneprune.shared.config import ConfigError, apply_overrides, load_yaml, validate
    from tuneprune.tracking import run_config_from_mlflow
    from tuneprune.training import TrainingDiverged
    from tuneprune.training.checkpoint import CHECKPOINT_NAME

    if args.resume and args.out is None:
        raise ConfigError("--resume: needs --out, the directory whose checkpoint.pt the run goes on from")
    if args.from_run and args.config is not None:
        raise ConfigError(
            f"config = {str(args.config)!r}: not with --from-run, which re-runs that run's own config (change it with --set)"
        )
    # The trial spec: from a YAML file, or from an MLflow run with --from-run.
    if args.from_run:
        data = run_config_from_mlflow(args.from_run, args.tracking_uri)
    else:
        data = load_yaml(args.config) if args.config else {}
    config = validate(TrialSpec, apply_overrides(data, args.overrides))
    check_data_dir(config.dataset, config.data_dir, config.download)
    out = args.out.resolve() if args.out else None
    resume = out / CHECKPOINT_NAME if args.resume and out and (out / CHECKPOINT_NAME).exists() else None
    try:
        executed = execute(config, out, resume_from=resume, progress=not args.no_progress)
    except TrainingDiverged as err:  # not bad input (exit 2): the run itself failed, said in one line
        sys.stderr.write(f"tuneprune train: error: the run diverged: {err}\n")
        return 1
    summary: dict = dict(executed.summary)
    if executed.model_path is not None:
        summary["model_path"] = str(executed.model_path)
    if args.json:
        print_json(summary)
    else:
        print(f"model={config.model} dataset={config.dataset} epochs={config.epochs}")
        for key in ("test_acc", "val_acc", "test_loss", "final_sparsity", "pruned_acc", "model_path"):
            if key in summary:
                value = summary[key]
                print(f"  {key:15s} {value:.4f}" if isinstance(value, float) else f"  {key:15s} {value}")
    return 0
