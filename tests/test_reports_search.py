"""Reports of a real small search on digits (SPEC 2, 3, 8): fronts, hypervolumes, HTML, best YAML, fit-alpha, fit-scheduler."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys

import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient
from pymoo.indicators.hv import HV
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from tuneprune.cli import main
from tuneprune.search import prepare_search, run_search
from tuneprune.sparsity import AdaptiveScheduler, SparsityConfig, build_schedule, resolve_alpha
from tuneprune.sparsity.theta import PUBLISHED_ALPHA_RULE

pytestmark = pytest.mark.ray

# alpha and two adaptive-scheduler constants at two targets, on accuracy and mean mask stability.
SPACE = {
    "name": "report_search",
    "base": {
        "model": "small_cnn", "dataset": "digits", "epochs": 2, "batch_size": 64,
        "sparsity": {
            "target": 0.95, "theta": {"policy": "log_density", "alpha": 0.1},
            "scheduler": {"type": "adaptive", "A": 0.5, "B": 0.8, "C": 20, "D": -0.01, "initial_sparsity": 0.5},
        },
    },
    "params": {
        "sparsity.theta.alpha": {"type": "float", "low": 0.0, "high": 0.3},
        "sparsity.scheduler.A": {"type": "float", "low": 0.1, "high": 1.0},
        "sparsity.scheduler.D": {"type": "float", "low": -0.02, "high": 0.01},
    },
    "grid": {"sparsity.target": [0.95, 0.99]},
    "objectives": {"val_acc": "max", "mean_mask_stability": "max"},
    "sampler": {"type": "nsga2", "seed": 0},
    "num_samples": 3,
}  # fmt: skip


@pytest.fixture(scope="module")
def search(ray_session, tmp_path_factory):
    root = tmp_path_factory.mktemp("report_search")
    path = root / "space.yaml"
    path.write_text(yaml.safe_dump(SPACE, sort_keys=False))  # val_acc stays the first objective
    stores = {"tracking_uri": f"sqlite:///{root / 'mlruns.db'}", "storage_url": f"sqlite:///{root / 'optuna.db'}"}
    return run_search(prepare_search(path, results_root=root / "runs", **stores), progress=False)


@pytest.fixture(scope="module")
def report(search):
    """The report, written by name through the CLI into its default directory."""
    assert main(["report", search.name, "--tracking-uri", search.tracking_uri]) == 0
    return search.results_dir / "report"


def read_csv(path) -> list[dict]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


def complete_trials(search) -> list[dict]:
    return [t for t in search.trials if t["state"] == "COMPLETE"]


def independent_points(search) -> dict[str, dict[str, float]]:
    """val_acc, mean_mask_stability from the search summary and achieved sparsity from MLflow, per trial key."""
    client = MlflowClient(search.tracking_uri)
    return {
        t["key"]: {**t["values"], "sparsity": client.get_run(t["mlflow_run_id"]).data.metrics["sparsity"]}
        for t in complete_trials(search)
    }


@pytest.mark.parametrize("x", ["sparsity", "mean_mask_stability"])
def test_front_csv_is_the_non_dominated_subset(search, report, x):
    expected = independent_points(search)
    points = read_csv(report / f"front_val_acc_vs_{x}_points.csv")
    assert {p["trial"] for p in points} == set(expected)
    keys = sorted(expected)
    F = -np.array([[expected[k][x], expected[k]["val_acc"]] for k in keys])
    front = {keys[i] for i in NonDominatedSorting().do(F, only_non_dominated_front=True)}
    assert {r["trial"] for r in read_csv(report / f"front_val_acc_vs_{x}_front.csv")} == front
    assert {p["trial"] for p in points if p["on_front"] == "True"} == front


def test_hypervolume_matches_pymoo(search, report):
    expected = independent_points(search)
    rows = {r["plane"]: r for r in read_csv(report / "hypervolume.csv")}
    assert set(rows) == {"val_acc vs sparsity", "val_acc vs mean_mask_stability"}
    for x in ("sparsity", "mean_mask_stability"):
        F = -np.array([[p[x], p["val_acc"]] for p in expected.values()])
        row = rows[f"val_acc vs {x}"]
        assert (float(row["reference_x"]), float(row["reference_y"])) == (0.0, 0.0)
        assert float(row["hypervolume"]) == pytest.approx(HV(ref_point=np.zeros(2))(F), rel=1e-12)


def test_html_embeds_every_plot_and_is_logged(search, report):
    html = (report / "report.html").read_text()
    pngs = sorted(p.name for p in report.glob("*.png"))
    assert len(pngs) >= 7  # two fronts, importances, accuracy per param, two learning curves, alpha per target
    assert html.count('<img src="data:image/png;base64,') == len(pngs)
    assert all(src.startswith("data:image/png;base64,") for src in re.findall(r'src="([^"]*)"', html))
    assert "http://" not in html and "https://" not in html
    assert {"learning_curves_0.png", "learning_curves_1.png", "alpha_per_target.png", "importances.png"} <= set(pngs)
    logged = {a.path for a in MlflowClient(search.tracking_uri).list_artifacts(search.parent_run_id, "report")}
    assert {f"report/{name}" for name in [*pngs, "report.html", "best.yaml", "hypervolume.csv"]} <= logged


def test_tables_importances_and_alpha_per_target(search, report):
    best = read_csv(report / "best_trials.csv")
    assert {r["trial"] for r in best} == {b["key"] for b in search.best}
    html = (report / "report.html").read_text()
    importances = read_csv(report / "importances.csv") if (report / "importances.csv").exists() else []
    computed = {(r["study"], r["objective"]) for r in importances}
    for study in ("report_search[sparsity.target=0.95]", "report_search[sparsity.target=0.99]"):
        for objective in ("val_acc", "mean_mask_stability"):  # computed, or the page says why not
            assert (study, objective) in computed or f"{study}: not computable for {objective}" in html
    alphas = read_csv(report / "alpha_per_target.csv")
    assert sorted(float(r["target"]) for r in alphas) == [0.95, 0.99]
    assert "default (base) configuration" in html


def test_best_yaml_trains(report, tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "tuneprune.cli", "train", str(report / "best.yaml"), "--set", "epochs=1", "--json"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert 0.0 <= json.loads(out.stdout)["test_acc"] <= 1.0


def test_fit_alpha_with_two_targets_fits_c1_and_c4(search, tmp_path, capsys):
    assert main(["fit-alpha", str(search.results_dir), "--out", str(tmp_path)]) == 0
    assert "fewer than 4 points" in capsys.readouterr().out
    rule = yaml.safe_load((tmp_path / "alpha_rule.yaml").read_text())
    assert rule["fitted"] == ["c1", "c4"] and rule["points"] == 2
    assert (rule["c2"], rule["c3"]) == (PUBLISHED_ALPHA_RULE["c2"], PUBLISHED_ALPHA_RULE["c3"])
    assert resolve_alpha(f"fitted:{tmp_path / 'alpha_rule.yaml'}", 0.97) >= 0.0


def test_fit_scheduler_presets_load(search, tmp_path, capsys):
    assert main(["fit-scheduler", search.parent_run_id, "--tracking-uri", search.tracking_uri, "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    presets = sorted(tmp_path.glob("preset-*.yaml"))
    assert [p.stem.removeprefix("preset-") for p in presets] == sorted(b["key"] for b in search.best)
    assert all(str(p) in printed for p in presets)
    for path, entry in zip(presets, sorted(search.best, key=lambda b: b["key"])):
        scheduler = AdaptiveScheduler.preset(str(path), final_sparsity=0.95, epochs=10)
        expected = entry["config"]["sparsity"]["scheduler"]
        assert (scheduler.A, scheduler.B, scheduler.C, scheduler.D) == tuple(expected[k] for k in "ABCD")
        config = SparsityConfig.model_validate({"target": 0.95, "scheduler": {"type": "adaptive", "preset": str(path)}})
        assert build_schedule(config, steps_per_epoch=5, epochs=2).needs_stability
    assert {"lambda.png", "sparsity_trajectories.png"} <= {p.name for p in tmp_path.glob("*.png")}


def test_bad_source_exits_2_with_one_line(search, tmp_path, monkeypatch, capsys):
    out = subprocess.run(
        [sys.executable, "-m", "tuneprune.cli", "report", "no_such_search", "--tracking-uri", search.tracking_uri],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "'no_such_search'" in out.stderr
    monkeypatch.chdir(tmp_path)  # no MLflow store here: refused without creating one
    assert main(["report", "no_such_search"]) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "'no_such_search'" in err
    assert not (tmp_path / "mlruns.db").exists()


def test_follow_up_commands_find_the_search_from_any_directory(search, tmp_path):
    """The search recorded its stores in the index: no --tracking-uri, and another working directory."""
    fit = subprocess.run(
        [sys.executable, "-m", "tuneprune.cli", "fit-scheduler", search.name, "--out", str(tmp_path / "fit")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert fit.returncode == 0, fit.stderr
    assert f"/runs/{search.parent_run_id}" in fit.stderr  # the parent run's page in the MLflow UI
    assert not (tmp_path / "mlruns.db").exists()
    trial = search.trials[0]["mlflow_run_id"]
    train = subprocess.run(
        [sys.executable, "-m", "tuneprune.cli", "train", "--from-run", trial, "--set", "epochs=1", "--json", "--no-progress"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr
    assert 0.0 <= json.loads(train.stdout)["test_acc"] <= 1.0
    assert "Downloading artifacts" not in train.stderr
