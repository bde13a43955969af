"""Reports of a real small search on digits (formulas §2, §3, §8): fronts, hypervolumes, HTML, best YAML, fit-alpha, fit-scheduler."""

from __future__ import annotations

import csv
import json
import re
import shlex
import subprocess
import sys
from typing import Any

import numpy as np
import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient
from pymoo.indicators.hv import HV
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from tuneprune.cli import main
from tuneprune.cli.search import print_summary
from tuneprune.output.commands import tuneprune_command
from tuneprune.search import prepare_search, run_search
from tuneprune.sparsity import AdaptiveSchedule, AdaptiveScheduler, SparsityConfig, build_schedule
from tuneprune.tracking import TAG_KIND, TAG_TRIAL

pytestmark = pytest.mark.ray

# alpha and three adaptive-scheduler constants at two targets, on accuracy and mean mask stability. At 99.9 %
# small_cnn keeps 94 weights and stays at chance after 2 epochs, and a steep lambda (C = 100) with a low B and a
# negative D stalls a trial short of its target (more accurate and stabler than those that got there): trials the
# fits must leave out.
SPACE = {
    "name": "report_search",
    "base": {
        "model": "small_cnn", "dataset": "digits", "epochs": 2, "batch_size": 64,
        "sparsity": {
            "target": 0.95, "theta": {"policy": "log_density", "alpha": 0.1},
            "scheduler": {"type": "adaptive", "A": 0.5, "B": 0.8, "C": 100, "D": -0.01, "initial_sparsity": 0.5},
        },
    },
    "params": {
        "sparsity.theta.alpha": {"type": "float", "low": 0.0, "high": 0.3},
        "sparsity.scheduler.A": {"type": "float", "low": 0.1, "high": 1.0},
        "sparsity.scheduler.D": {"type": "float", "low": -0.02, "high": 0.01},
        "sparsity.scheduler.B": {"type": "float", "low": 0.5, "high": 0.99},
    },
    "grid": {"sparsity.target": [0.95, 0.999]},
    "objectives": {"val_acc": "max", "mean_mask_stability": "max"},
    "sampler": {"type": "nsga2", "seed": 0},
    "num_samples": 3,
}  # fmt: skip


@pytest.fixture(scope="module")
def search(ray_session, tmp_path_factory):
    root = tmp_path_factory.mktemp("report_search")
    path = root / "space.yaml"
    path.write_text(yaml.safe_dump(SPACE, sort_keys=False))  # val_acc stays the first objective
    stores: dict[str, Any] = {
        "tracking_uri": f"sqlite:///{root / 'mlruns.db'}",
        "storage_url": f"sqlite:///{root / 'optuna.db'}",
    }
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
    assert "http://" not in html
    assert "https://" not in html
    assert {"learning_curves_0.png", "learning_curves_1.png", "alpha_per_target.png", "importances.png"} <= set(pngs)
    logged = {a.path for a in MlflowClient(search.tracking_uri).list_artifacts(search.parent_run_id, "report")}
    assert {f"report/{name}" for name in [*pngs, "report.html", "best.yaml", "hypervolume.csv"]} <= logged


def test_tables_importances_and_alpha_per_target(search, report):
    best = read_csv(report / "best_trials.csv")
    assert {r["trial"] for r in best} == {b["key"] for b in search.best}
    html = (report / "report.html").read_text()
    importances = read_csv(report / "importances.csv") if (report / "importances.csv").exists() else []
    computed = {(r["study"], r["objective"]) for r in importances}
    for study in ("report_search[sparsity.target=0.95]", "report_search[sparsity.target=0.999]"):
        for objective in ("val_acc", "mean_mask_stability"):  # computed, or the page says why not
            assert (study, objective) in computed or f"{study}: not computable for {objective}" in html
    alphas = read_csv(report / "alpha_per_target.csv")
    assert {float(r["target"]) for r in alphas} == {0.95, 0.999}
    usable = [r for r in alphas if not r["excluded"]]
    assert len({float(r["target"]) for r in usable}) == len(usable)  # one best usable alpha per target
    assert "default (base) configuration" in html


def trial_metrics(search, key: str) -> dict[str, float]:
    trial = next(t for t in search.trials if t["key"] == key)
    return MlflowClient(search.tracking_uri).get_run(trial["mlflow_run_id"]).data.metrics


def test_best_yaml_reproduces_its_trial_exactly(search, report, tmp_path):
    """The report's 'run it with' command, as printed: the same metrics to the last bit on this CPU."""
    html = (report / "report.html").read_text()
    found = re.search(r"Trial (g\d+-\d+) .*?run it with: (\S+ train [^<\s]+)", html)
    assert found is not None
    key, command = found.groups()
    assert command == tuneprune_command(
        "train", report / "best.yaml"
    )  # the script beside this interpreter: runs as printed
    config = yaml.safe_load((report / "best.yaml").read_text())
    assert config["num_threads"] == 1
    assert config["device"] == "cpu"  # what the trial ran with, recorded
    out = subprocess.run(
        [*shlex.split(command), "--json"], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    rerun, trial = json.loads(out.stdout), trial_metrics(search, key)
    for metric in ("test_acc", "val_acc", "test_loss", "val_loss", "sparsity"):
        assert rerun[metric] == trial[metric], metric


def usable_by_hand(search, key: str) -> bool:
    """Reached its target within 0.001 and val_acc at least 0.1 above chance (10 digit classes): the defaults."""
    metrics = trial_metrics(search, key)
    target = next(t for t in search.trials if t["key"] == key)["config"]["sparsity"]["target"]
    return metrics["sparsity"] >= target - 0.001 and metrics["val_acc"] >= 0.1 + 0.1


def test_fit_alpha_excludes_unusable_trials_and_keeps_poles_out_of_range(search, tmp_path, capsys):
    complete = [t["key"] for t in complete_trials(search)]
    unusable = {k for k in complete if not usable_by_hand(search, k)}
    assert unusable
    assert unusable != set(complete)  # the 99.9 % trials stay at chance
    assert main(["fit-alpha", str(search.results_dir), "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert {line.split()[2] for line in printed.splitlines() if line.startswith("  excluded ")} == unusable
    assert "near chance: val_acc" in printed
    rule = yaml.safe_load((tmp_path / "alpha_rule.yaml").read_text())
    low, high = rule["fitted_range"]
    lower, upper = rule["poles"]
    assert lower <= low - rule["pole_margin"] + 1e-9
    assert upper >= high + rule["pole_margin"] - 1e-9
    assert len(rule["residuals"]) == rule["points"]
    assert "r2" in rule
    fitted = {r["trial"] for r in read_csv(tmp_path / "residuals.csv")}
    assert fitted
    assert not fitted & unusable


def test_fit_scheduler_presets_load_and_never_judge_a_trial_below_its_target(search, tmp_path, capsys):
    code = main(["fit-scheduler", search.parent_run_id, "--tracking-uri", search.tracking_uri, "--out", str(tmp_path)])
    printed = capsys.readouterr()
    assert "judged: a trial is used when its achieved sparsity >= target - 0.001" in printed.out
    usable = [k for k in (t["key"] for t in complete_trials(search)) if usable_by_hand(search, k)]
    assert code == 0
    assert usable
    rows = {r["trial"]: r for r in read_csv(tmp_path / "trials.csv")}
    assert set(rows) == {t["key"] for t in complete_trials(search)}
    for key, row in rows.items():  # every trial shows its achieved sparsity and the epoch it reached the target
        assert float(row["sparsity"]) == trial_metrics(search, key)["sparsity"]
        assert (
            f"  {key}  target {float(row['target']):g}  sparsity {float(row['sparsity']):.4f}  reached " in printed.out
        )
    presets = sorted(tmp_path.glob("preset-*.yaml"))
    chosen = [p.stem.removeprefix("preset-") for p in presets]
    assert chosen
    assert set(chosen) <= set(usable)  # never a trial below its target (or near chance)
    short = {k for k, row in rows.items() if float(row["sparsity"]) < float(row["target"]) - 0.001}
    assert short & {b["key"] for b in search.best}  # Optuna's own Pareto set holds a trial that never got there
    assert all(rows[k]["reached_epoch"] == "" and rows[k]["excluded"].startswith("target not reached") for k in short)
    assert all(rows[k]["pareto"] == "True" and rows[k]["reached_epoch"] for k in chosen)
    configs = {t["key"]: t["config"] for t in search.trials}
    for path, key in zip(presets, chosen, strict=True):
        scheduler = AdaptiveScheduler.preset(str(path), final_sparsity=0.95, epochs=10)
        expected = configs[key]["sparsity"]["scheduler"]
        assert tuple(expected[k] for k in "ABCD") == (scheduler.A, scheduler.B, scheduler.C, scheduler.D)
        config = SparsityConfig.model_validate({"target": 0.95, "scheduler": {"type": "adaptive", "preset": str(path)}})
        assert isinstance(build_schedule(config, steps_per_epoch=5, epochs=2), AdaptiveSchedule)
    assert {"lambda.png", "sparsity_trajectories.png"} <= {p.name for p in tmp_path.glob("*.png")}


def test_fit_scheduler_rerun_into_the_same_folder_keeps_only_its_presets(search, tmp_path, capsys):
    """The folder holds a preset for each trial the run chose, as printed: a rerun with stricter rules deletes the
    presets of the trials it no longer chooses (they stayed: a preset of a trial it judged short of its target)."""

    def presets(*options: str) -> set[str]:
        assert main(["fit-scheduler", str(search.results_dir), "--out", str(tmp_path), *options]) == 0
        printed = capsys.readouterr().out.splitlines()
        return {line.split()[1] for line in printed if line.startswith("preset: ")}

    mine = tmp_path / "preset-mine.yaml"  # a preset of the user's in the folder: never a file the command wrote
    mine.write_text("A: 0.5\nB: 0.8\nC: 20\nD: -0.01\n")
    loose = presets("--sparsity-tolerance", "0.99", "--chance-margin", "0")  # every trial judged: Optuna's Pareto set
    strict = presets()
    assert loose - strict  # the trial short of its target, chosen by the loose rules only
    assert {str(p) for p in tmp_path.glob("preset-*.yaml")} == strict | {str(mine)}


def test_bad_source_exits_2_with_one_line(search, tmp_path, monkeypatch, capsys):
    out = subprocess.run(
        [sys.executable, "-m", "tuneprune.cli", "report", "no_such_search", "--tracking-uri", search.tracking_uri],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0
    assert "'no_such_search'" in out.stderr
    monkeypatch.chdir(tmp_path)  # no MLflow store here: refused without creating one
    assert main(["report", "no_such_search"]) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0
    assert "'no_such_search'" in err
    assert not (tmp_path / "mlruns.db").exists()


def test_one_name_per_trial_across_cli_report_mlflow_and_optuna(search, report, capsys):
    """The key (g1-002) names a trial everywhere; the MLflow run name and the Optuna attribute 'name' start with it."""
    client = MlflowClient(search.tracking_uri)
    experiment = client.get_run(search.parent_run_id).info.experiment_id
    runs = client.search_runs(
        [experiment], f"tags.`mlflow.parentRunId` = '{search.parent_run_id}' and tags.`{TAG_KIND}` = 'trial'"
    )
    names = {r.data.tags[TAG_TRIAL]: r.info.run_name for r in runs}
    trials = {t["key"]: t for t in search.trials}
    assert set(names) == set(trials)
    for key, trial in trials.items():
        assert names[key] == trial["name"]
        assert trial["name"].startswith(key + " target=")
    for target in (0.95, 0.999):
        study = optuna.load_study(study_name=f"report_search[sparsity.target={target}]", storage=search.storage_url)
        for t in study.trials:
            assert t.user_attrs["name"] == trials[t.user_attrs["key"]]["name"] == names[t.user_attrs["key"]]
    print_summary(search)
    printed = capsys.readouterr().out
    assert all(f" {b['key']} " in printed for b in search.best)  # the CLI's table names the same trials
    assert {r["trial"] for r in read_csv(report / "front_val_acc_vs_sparsity_points.csv")} == {
        t["key"] for t in complete_trials(search)
    }


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
