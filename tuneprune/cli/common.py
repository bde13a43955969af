"""Arguments and output helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any


def add_set_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value by dotted path, e.g. --set sparsity.target=0.95 (repeatable)",
    )


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


def print_locations(results_dir: object, tracking_uri: str, parent_run_id: str, storage_url: str | None = None) -> None:
    """Where a search or evolution wrote its results, as commands to open them (never wrapped)."""
    print(f"results:  {results_dir}")
    print(f"MLflow:   mlflow ui --backend-store-uri {tracking_uri} --host 127.0.0.1   (parent run {parent_run_id})")
    if storage_url:
        print(f"Optuna:   optuna-dashboard {storage_url} --host 127.0.0.1")
