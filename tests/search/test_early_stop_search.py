"""Early stopping in real searches (local Ray, Optuna SQLite, MLflow SQLite, digits): per grid point, and on two objectives."""

from __future__ import annotations

import csv
import json
import signal
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from tuneprune.cli import main
from tuneprune.search import prepare_search, run_search
from tuneprune.search.early_stop import RUNGS_FILE
from tuneprune.search.rung_ranking import stops
from tuneprune.search.studies import claimed
from tuneprune.shared.pareto import non_dominated
from tuneprune.tracking import TAG_KIND, TAG_TRIAL

pytestmark = pytest.mark.ray

# At 99.9 % small_cnn keeps a few dozen weights and stays near chance (val_acc about 0.1); at 50 % it passes 0.4
# after one epoch at any of these learning rates. The target is reached in the first epoch (end_fraction 0.25).
BASE = {
    "model": "small_cnn", "dataset": "digits", "epochs": 3, "batch_size": 64, "grad_clip": None,
    "sparsity": {"target": 0.5, "scheduler": {"end_fraction": 0.25}},
}  # fmt: skip
ASHA = {"type": "asha", "grace_period": 1, "reduction_factor": 2}


def space_file(tmp_path: Path, name: str, **fields) -> str:
    doc = {"name": name, "base": BASE, "early_stopping": ASHA, **fields}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(path)


def trial_runs(tracking_uri: str, parent_run_id: str) -> dict[str, Run]:
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name("tuneprune")
    assert exp is not None
    runs = client.search_runs(
        [exp.experiment_id], f"tags.`{TAG_KIND}` = 'trial' and tags.`mlflow.parentRunId` = '{parent_run_id}'"
    )
    return {r.data.tags[TAG_TRIAL]: r for r in runs}


def replay(tables: dict, directions: list[str], eta: float) -> None:
    """Every recorded decision equals the rule applied to the rows recorded before it in the same table, in order."""
    for rungs in tables.values():
        for rung in rungs.values():
            rows = list(rung.values())
            for i, row in enumerate(rows):
                assert row[-1] == stops([r[:-1] for r in rows[:i]], row[:-1], directions, eta)


@pytest.mark.parametrize("pack", [1, 3])
def test_a_hard_grid_point_is_stopped_only_by_its_own_trials(ray_session, tmp_path, stores, pack):
    path = space_file(
        tmp_path, f"pergrid{pack}", params={"lr": {"type": "float", "low": 0.01, "high": 0.3, "log": True}},
        grid={"sparsity.target": [0.5, 0.999]}, num_samples=3, max_concurrent=2, resources={"cpu": 1, "pack": pack},
    )  # fmt: skip
    summary = run_search(prepare_search(path, **stores), progress=False)

    tables = json.loads((summary.results_dir / RUNGS_FILE).read_text())["tables"]
    keys = {g: {t["key"] for t in summary.trials if t["key"].startswith(f"{g}-")} for g in ("g0", "g1")}
    assert set(tables) == {"g0", "g1"}
    for grid, rungs in tables.items():  # each grid point's rungs hold its own trials and nothing else
        assert all(set(rung) <= keys[grid] for rung in rungs.values())
        assert set(rungs["1"]) == keys[grid]  # every trial reached the first rung
    replay(tables, ["max"], 2.0)
    easy, hard = (sorted(row[0] for row in tables[g]["1"].values()) for g in ("g0", "g1"))
    assert hard[-1] < easy[0]  # one rule for both would rank every hard trial below every easy one ...
    hard_states = [t["state"] for t in summary.trials if t["grid"]["sparsity.target"] == 0.999]
    assert "COMPLETE" in hard_states  # ... yet the hard grid point's best trials finish
    runs = trial_runs(summary.tracking_uri, summary.parent_run_id)
    for trial in summary.trials:
        stopped = any(rung.get(trial["key"], [False])[-1] for rungs in tables.values() for rung in rungs.values())
        assert (trial["state"] == "PRUNED") == stopped
        assert runs[trial["key"]].info.status == ("KILLED" if stopped else "FINISHED")


def test_a_two_objective_search_stops_dominated_trials_and_resumes_with_its_rungs(search_driver, tmp_path, stores):
    directions = ["max", "max"]
    path = space_file(
        tmp_path, "moasha",
        params={"lr": {"type": "float", "low": 0.003, "high": 0.3, "log": True},
                "sparsity.target": {"type": "float", "low": 0.5, "high": 0.999}},
        objectives={"val_acc": "max", "sparsity": "max"}, sampler={"type": "nsga2", "seed": 3},
        num_samples=6, max_concurrent=2,
    )  # fmt: skip
    rungs_file = Path(stores["results_root"]) / "moasha" / RUNGS_FILE
    driver = search_driver(path, tmp_path)
    before: dict = {}
    deadline = time.time() + 240
    try:
        while time.time() < deadline:  # kill the driver once the rungs hold a few decisions
            if rungs_file.exists():
                before = json.loads(rungs_file.read_text())["tables"]
                if sum(len(rung) for rung in before.get("g0", {}).values()) >= 4:
                    break
            time.sleep(0.2)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    assert sum(len(rung) for rung in before["g0"].values()) >= 4

    summary = run_search(prepare_search(path, resume=True, **stores), progress=False)
    after = json.loads(rungs_file.read_text())["tables"]
    for milestone, rung in before["g0"].items():  # every decision taken before the kill is kept, none taken again
        assert list(after["g0"][milestone])[: len(rung)] == list(rung)
        assert all(after["g0"][milestone][k] == row for k, row in rung.items())
    replay(after, directions, 2.0)

    study = optuna.load_study(study_name="moasha", storage=stores["storage_url"])
    superseded = claimed(study.trials)  # the orphans, continued under their keys by the trials queued in their place
    states = {t.user_attrs["key"]: t.state.name for t in study.trials if t.number not in superseded}
    assert len(states) == 6
    assert "PRUNED" in states.values()
    assert "COMPLETE" in states.values()
    assert set(states.values()) <= {"PRUNED", "COMPLETE"}
    stopped = {k for rung in after["g0"].values() for k, row in rung.items() if row[-1]}
    assert {k for k, s in states.items() if s == "PRUNED"} == stopped
    runs = trial_runs(stores["tracking_uri"], summary.parent_run_id)
    assert {k: r.info.status for k, r in runs.items()} == {k: "KILLED" if k in stopped else "FINISHED" for k in states}

    complete = [t for t in summary.trials if t["state"] == "COMPLETE"]
    points = np.array([[t["values"]["val_acc"], t["values"]["sparsity"]] for t in complete])
    assert {b["key"] for b in summary.best} == {complete[i]["key"] for i in non_dominated(points, directions)}
    assert not {b["key"] for b in summary.best} & stopped
    assert main(["report", summary.name, "--tracking-uri", summary.tracking_uri]) == 0
    out = summary.results_dir / "report"
    page = (out / "report.html").read_text()
    assert all(b["key"] in page for b in summary.best)
    anytime = read_csv(out / "anytime_hypervolume.csv")  # one row per trial, in the order they ended
    assert sorted(r["trial"] for r in anytime) == sorted(states)
    curve = [float(r["hypervolume"]) for r in anytime]
    assert curve == sorted(curve)
    assert curve[-1] > 0
    assert int(anytime[-1]["epochs"]) == sum(int(t["metrics"]["epoch"]) for t in summary.trials)
    assert sum(int(t["metrics"]["epoch"]) for t in summary.trials) < 3 * len(
        summary.trials
    )  # stopped trials saved epochs
    (front_hv,) = [
        float(r["hypervolume"]) for r in read_csv(out / "hypervolume.csv") if r["plane"] == "val_acc vs sparsity"
    ]
    assert curve[-1] == pytest.approx(front_hv, rel=1e-12)  # the anytime curve ends at the front's hypervolume


def read_csv(path: Path) -> list[dict]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("join", [False, True])
def test_a_new_search_does_not_inherit_the_rungs_of_an_old_one_in_its_results_directory(
    ray_session, tmp_path, stores, join
):
    """The stores started afresh (new files) and the results directory kept: a new search of the same name, started
    alone or by a ``--join`` driver, takes no decision from the rung tables an old one left there (its keys are the
    new trials' keys); only the drivers of that search (--resume, --join) do."""
    path = space_file(tmp_path, "fresh", params={"lr": {"type": "categorical", "choices": [0.05]}}, num_samples=1)
    old = Path(stores["results_root"]) / "fresh" / RUNGS_FILE
    old.parent.mkdir(parents=True)
    old.write_text(json.dumps({"directions": ["max"], "tables": {"g0": {"1": {"g0-000": [0.0, True]}}}}))
    summary = run_search(prepare_search(path, join=join, **stores), progress=False)
    assert [t["state"] for t in summary.trials] == ["COMPLETE"]
    assert json.loads(old.read_text())["tables"]["g0"]["1"]["g0-000"][-1] is False


def test_the_rungs_reach_the_longest_trials_whatever_the_grid_order(ray_session, tmp_path, stores):
    """Rungs at grace_period * reduction_factor^k up to the longest trials' epochs: with epochs swept [1, 4] the
    4-epoch trials are recorded at rung 2 too, as with [4, 1] (the first grid point's epochs capped them at 1)."""
    path = space_file(
        tmp_path, "rungs", grid={"epochs": [1, 4]}, params={"lr": {"type": "categorical", "choices": [0.05]}},
        num_samples=2, max_concurrent=1,
    )  # fmt: skip
    run_search(prepare_search(path, **stores), progress=False)
    tables = json.loads((Path(stores["results_root"]) / "rungs" / RUNGS_FILE).read_text())["tables"]
    assert sorted(tables["g1"].get("2", {})) == ["g1-000", "g1-001"]
