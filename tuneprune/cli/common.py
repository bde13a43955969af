"""Arguments and output helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneprune.shared.config import NAME_PATTERN

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

RESULTS_DIR_ENV = "TUNEPRUNE_RESULTS_DIR"
# Result tables written to a file or a pipe are never narrowed to 80 columns (which cuts numbers).
FILE_WIDTH = 1000


def add_set_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value by dotted path, e.g. --set sparsity.target=0.95 (repeatable)",
    )


def writable(directory: Path) -> bool:
    """Whether a folder can be made in ``directory``: one is made and removed (as root, ``os.access`` says yes even
    under /proc or on a read-only mount)."""
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".tuneprune-", dir=directory))
    except OSError:
        return False
    return True


def output_directory(text: str) -> Path:
    """An output option's directory (argparse type): one that exists or can be made, nothing on its path a file, its
    nearest existing folder writable, so that the command stops before its work, not when it writes its results."""
    path = Path(text)
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise argparse.ArgumentTypeError(f"{existing} is a file, not a directory")
    if existing is not None and not writable(existing):
        raise argparse.ArgumentTypeError(f"{existing} is not a writable directory")
    return path


def run_name(text: str) -> str:
    """A ``--name`` (argparse type): it names a folder under the results directory, so :data:`NAME_PATTERN`'s
    characters only, checked before any work."""
    if not re.fullmatch(NAME_PATTERN, text):
        raise argparse.ArgumentTypeError(f"{text!r}: letters, digits, '_', '.' and '-' only, not dots alone")
    return text


def add_results_dir_argument(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--results-dir",
        dest="results_root",
        metavar="RESULTS_DIR",
        type=output_directory,
        default=os.environ.get(RESULTS_DIR_ENV) or "runs",
        help=f"{what} go to RESULTS_DIR/NAME (default: ${RESULTS_DIR_ENV}, else ./runs)",
    )


def add_progress_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress output (default: live in a terminal, else a line every few seconds, on stderr)",
    )


def results_console() -> Console:
    """The stdout console for result tables: as wide as the terminal, or unlimited when not a terminal."""
    from rich.console import Console

    return Console(highlight=False) if sys.stdout.isatty() else Console(highlight=False, width=FILE_WIDTH)


def titled_table(title: str, **options: Any) -> Table:
    """A rich table at least as wide as its title, so that the title is never wrapped."""
    from rich.table import Table

    return Table(title=title, min_width=len(title), **options)


def json_safe(value: Any) -> Any:
    """Replace non-finite floats by strings so the output is valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def print_json(obj: Any) -> None:
    print(json.dumps(json_safe(obj), indent=2, sort_keys=True, default=str))


def print_locations(
    results_dir: object,
    tracking_uri: str,
    parent_run_id: str,
    storage_url: str | None = None,
    report_source: str | None = None,
) -> None:
    """Where a command wrote its results, as commands that run as printed and the run's MLflow page."""
    from mlflow.tracking import MlflowClient

    from tuneprune.output.commands import mlflow_ui_command, optuna_dashboard_command, run_url, tuneprune_command

    experiment_id = MlflowClient(tracking_uri).get_run(parent_run_id).info.experiment_id
    print(f"results:  {results_dir}")
    ui = mlflow_ui_command(tracking_uri)
    if ui:
        print(f"MLflow:   {ui}")
    print(f"runs:     {run_url(tracking_uri, experiment_id, parent_run_id)}")
    if storage_url:
        print(f"Optuna:   {optuna_dashboard_command(storage_url)}")
    if report_source:
        print(f"report:   {tuneprune_command('report', report_source)}")
