"""Reports of a real small evolution on digits (formulas §5, §8): front, hypervolume, HTML, the chosen prune-stochastic config."""

from __future__ import annotations

import csv
import html
import json
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient
from pymoo.indicators.hv import HV
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from tuneprune.cli import main
from tuneprune.evolution import prepare_evolution, run_evolution
from tuneprune.shared.config import load_config
from tuneprune.stochastic import StochasticConfig

pytestmark = pytest.mark.ray

SPACE: dict[str, Any] = {
    "name": "report_evolution",
    "train": {"model": "small_cnn", "dataset": "digits", "epochs": 3, "batch_size": 64, "lr": 0.05},
    "algorithm": {"type": "nsga2", "pop_size": 6, "generations": 2, "seed": 1},
    "variables": {"rate": {"low": 0.5, "high": 0.97}},
    "samples": 1,
    "reference_point": [0.05, 0.1],
}


@pytest.fixture(scope="module")
def evolution(ray_session, dense_digits, tmp_path_factory):
    root = tmp_path_factory.mktemp("report_evolution")
    path = root / "space.yaml"
    path.write_text(yaml.safe_dump(SPACE))
    store = {"tracking_uri": f"sqlite:///{root / 'mlruns.db'}", "results_root": root / "runs"}
    return run_evolution(prepare_evolution(path, checkpoint=dense_digits[0], **store), progress=False)


@pytest.fixture(scope="module")
def report(evolution):
    """The report of the results directory, through the CLI, into its default directory."""
    assert main(["report", str(evolution.results_dir)]) == 0
    return evolution.results_dir / "report"


def read_csv(path) -> list[dict]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


def individuals(evolution) -> dict[tuple[int, int], tuple[float, float]]:
    """(generation, index) -> (sparsity, accuracy) of every successful individual, from the evolution's own files."""
    rows = [r for p in sorted((evolution.results_dir / "population").glob("*.csv")) for r in read_csv(p)]
    return {
        (int(r["generation"]), int(r["index"])): (float(r["sparsity"]), float(r["accuracy"]))
        for r in rows
        if r["status"] == "ok"
    }


def keyed(rows) -> set[tuple[int, int]]:
    return {(int(r["generation"]), int(r["index"])) for r in rows}


def test_front_csv_is_the_non_dominated_subset(evolution, report):
    points = individuals(evolution)
    assert keyed(read_csv(report / "front_accuracy_vs_sparsity_points.csv")) == set(points)
    keys = sorted(points)
    front = NonDominatedSorting().do(-np.array([points[k] for k in keys]), only_non_dominated_front=True)
    assert keyed(read_csv(report / "front_accuracy_vs_sparsity_front.csv")) == {keys[i] for i in front}


def test_hypervolume_matches_pymoo_and_the_evolution(evolution, report):
    (row,) = read_csv(report / "hypervolume.csv")
    accuracy_ref, sparsity_ref = SPACE["reference_point"]
    assert (float(row["reference_x"]), float(row["reference_y"])) == (sparsity_ref, accuracy_ref)
    F = -np.array(list(individuals(evolution).values()))
    expected = HV(ref_point=-np.array([sparsity_ref, accuracy_ref]))(F)
    assert float(row["hypervolume"]) == pytest.approx(expected, rel=1e-12)
    assert float(row["hypervolume"]) == pytest.approx(evolution.hypervolume[-1], rel=1e-12)
    assert (
        f"reference point (sparsity = {sparsity_ref:.6g}, accuracy = {accuracy_ref:.6g})"
        in (report / "report.html").read_text()
    )


def test_html_embeds_every_plot_and_is_logged(evolution, report):
    html = (report / "report.html").read_text()
    pngs = sorted(p.name for p in report.glob("*.png"))
    assert pngs == ["front_accuracy_vs_sparsity.png", "hypervolume.png"]
    assert html.count('<img src="data:image/png;base64,') == len(pngs)
    assert all(src.startswith("data:image/png;base64,") for src in re.findall(r'src="([^"]*)"', html))
    assert "Baselines drawn for comparison: dense; deterministic pruning, same rates." in html
    logged = {a.path for a in MlflowClient(evolution.tracking_uri).list_artifacts(evolution.parent_run_id, "report")}
    assert {f"report/{name}" for name in [*pngs, "report.html", "best.yaml"]} <= logged


def test_chosen_config_runs_with_prune_stochastic(evolution, report, tmp_path):
    config = load_config(StochasticConfig, report / "best.yaml")
    front = {(r["sigma"], r["rate"], r["seed"]) for r in evolution.front}
    assert (config.sigma, config.rate, config.seed) in front
    assert config.samples == SPACE["samples"]
    (printed_command,) = re.findall(r"Run it with: ([^<]+)", (report / "report.html").read_text())
    command = shlex.split(html.unescape(printed_command))  # as the report prints it, runnable from any directory
    assert Path(command[0]).is_absolute()  # the tuneprune script of this installation, no activated venv needed
    assert command[1:] == [
        "prune-stochastic",
        str(report / "best.yaml"),
        "--checkpoint",
        str(evolution.results_dir / "dense.pt"),
    ]
    out = subprocess.run(
        [*command, "--set", "feature_variance=false", "--out", str(tmp_path), "--json"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    printed = json.loads(out.stdout)
    assert printed["pruned_layers_sparsity"] == pytest.approx(config.rate, abs=1e-4)
    assert printed["model_sparsity"] > 0.4


def test_report_by_run_id_prints_the_html_path(evolution, tmp_path, capsys):
    assert (
        main(["report", evolution.parent_run_id, "--tracking-uri", evolution.tracking_uri, "--out", str(tmp_path)]) == 0
    )
    assert capsys.readouterr().out.strip() == str(tmp_path / "report.html")
    assert (tmp_path / "report.html").is_file()


def test_fit_scheduler_refuses_an_evolution(evolution, capsys):
    assert main(["fit-scheduler", str(evolution.results_dir)]) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0
    assert "not a search" in err
    assert str(evolution.results_dir) in err
    assert not (evolution.results_dir / "fit-scheduler").exists()  # refused before anything is written
