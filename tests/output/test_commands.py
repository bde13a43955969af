"""Commands printed for the user run as printed: scripts by absolute path, arguments quoted."""

from __future__ import annotations

import shlex
import sys

import pytest

from tuneprune.output.commands import (
    mlflow_ui_command,
    optuna_dashboard_command,
    run_url,
    script,
    tuneprune_command,
)


@pytest.fixture
def interpreter(tmp_path, monkeypatch):
    """An interpreter path in a directory of its own, so the test says which scripts lie beside it."""
    bin_dir = tmp_path / "venv dir" / "bin"
    bin_dir.mkdir(parents=True)
    monkeypatch.setattr(sys, "executable", str(bin_dir / "python"))
    return bin_dir


def test_a_script_beside_the_interpreter_is_named_by_its_path(interpreter):
    (interpreter / "tuneprune").write_text("")
    assert shlex.split(script("tuneprune", "tuneprune.cli")) == [str(interpreter / "tuneprune")]


def test_a_missing_script_runs_as_a_module_of_the_interpreter(interpreter):
    assert shlex.split(script("mlflow", "mlflow")) == [str(interpreter / "python"), "-m", "mlflow"]


def test_tuneprune_arguments_survive_the_shell(interpreter):
    (interpreter / "tuneprune").write_text("")
    command = tuneprune_command("train", interpreter / "my best.yaml", "--set", "lr=0.1; rm -rf x")
    assert shlex.split(command) == [
        str(interpreter / "tuneprune"), "train", str(interpreter / "my best.yaml"), "--set", "lr=0.1; rm -rf x"
    ]  # fmt: skip


def test_the_mlflow_ui_is_served_for_a_local_store_only(interpreter):
    store = "sqlite:////data/my runs/mlruns.db"
    words = shlex.split(mlflow_ui_command(store))
    assert words[words.index("--backend-store-uri") + 1] == store
    assert mlflow_ui_command("https://mlflow.example.org") is None


def test_the_optuna_dashboard_command_names_the_storage(interpreter):
    assert shlex.split(optuna_dashboard_command("sqlite:////data/o.db"))[-3:] == [
        "sqlite:////data/o.db", "--host", "127.0.0.1"
    ]  # fmt: skip


def test_a_run_url_is_on_the_server_or_on_the_local_ui():
    assert run_url("http://mlflow:5000/", "3", "abc") == "http://mlflow:5000/#/experiments/3/runs/abc"
    assert run_url("sqlite:////x.db", "3", "abc") == "http://127.0.0.1:5000/#/experiments/3/runs/abc"
