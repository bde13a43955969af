"""Commands the tool prints for the user to run next, written so that they run as printed.

The scripts (``tuneprune``, ``mlflow``, ``optuna-dashboard``) are named by their absolute path beside the running
interpreter, so a printed command works without an activated virtual environment; MLflow runs are named by their
direct URL in the MLflow UI.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

UI_HOST = "127.0.0.1"
UI_PORT = 5000


def script(name: str, module: str) -> str:
    """``name`` beside ``sys.executable`` when installed there, else ``python -m module``."""
    path = Path(sys.executable).parent / name
    if path.is_file():
        return shlex.quote(str(path))
    return f"{shlex.quote(sys.executable)} -m {module}"


def tuneprune_command(*args: object) -> str:
    """``tuneprune ARGS`` as a command line that runs from any directory."""
    return " ".join([script("tuneprune", "tuneprune.cli"), *(shlex.quote(str(a)) for a in args)])


def is_server(tracking_uri: str) -> bool:
    return tracking_uri.startswith(("http://", "https://"))


def mlflow_ui_command(tracking_uri: str) -> str | None:
    """The command that serves the MLflow UI of a local store (``None`` for a tracking server)."""
    if is_server(tracking_uri):
        return None
    store = shlex.quote(tracking_uri)
    return f"{script('mlflow', 'mlflow')} ui --backend-store-uri {store} --host {UI_HOST} --port {UI_PORT}"


def optuna_dashboard_command(storage_url: str) -> str:
    return f"{script('optuna-dashboard', 'optuna_dashboard')} {shlex.quote(storage_url)} --host {UI_HOST}"


def run_url(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """The page of ``run_id`` in the MLflow UI (the server's, or the one :func:`mlflow_ui_command` starts)."""
    base = tracking_uri.rstrip("/") if is_server(tracking_uri) else f"http://{UI_HOST}:{UI_PORT}"
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}"
