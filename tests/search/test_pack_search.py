"""Packed searches (``resources.pack``) with a real local Ray, Optuna SQLite studies and an MLflow SQLite store.

Every member stays its own trial: its own Optuna trial and MLflow child run with its own
per-epoch history, status, saved model and ``--from-run`` reproduction. Members train with
the default recipe (gradient clipping on) and bit for bit what they train alone
(tests/training/test_packing.py states why), so the reproduction must match exactly.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from tuneprune.search import prepare_search, run_search
from tuneprune.search.studies import claimed
from tuneprune.tracking import TAG_KIND, TAG_TRIAL

pytestmark = pytest.mark.ray

BASE = {"model": "small_cnn", "dataset": "digits", "epochs": 2, "batch_size": 64}  # the default recipe: clipping on
ALPHA = {"sparsity.theta.alpha": {"type": "float", "low": 0.0, "high": 0.3}}
SPARSE = {"target": 0.8, "theta": {"policy": "log_density", "alpha": 0.1, "mode": "global"}}


def space_file(tmp_path: Path, name: str, **fields) -> str:
    doc = {
        "name": name,
        "base": {**BASE, "sparsity": SPARSE},
        "params": ALPHA,
        "resources": {"cpu": 1, "pack": 3},
        **fields,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def member_runs(tracking_uri: str, parent_run_id: str) -> dict[str, Run]:
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name("tuneprune")
    assert exp is not None
    trials = client.search_runs([exp.experiment_id], f"tags.`{TAG_KIND}` = 'trial'")
    runs = [r for r in trials if r.data.tags["mlflow.parentRunId"] == parent_run_id]
    assert len(runs) == len({r.data.tags[TAG_TRIAL] for r in runs})  # one run per trial, no duplicates
    return {r.data.tags[TAG_TRIAL]: r for r in runs}


def steps(tracking_uri: str, run_id: str) -> list[int]:
    return sorted(m.step for m in MlflowClient(tracking_uri).get_metric_history(run_id, "val_acc"))


def test_a_pack_of_three_tracks_each_member_and_a_diverging_one_fails_alone(
    ray_session, tmp_path, stores, train_from_run
):
    path = space_file(tmp_path, "packed", grid={"lr": [0.05, 0.1, 1.0e6]}, num_samples=1)
    summary = run_search(prepare_search(path, **stores), progress=False)

    by_lr = {t["grid"]["lr"]: t for t in summary.trials}
    assert [by_lr[lr]["state"] for lr in (0.05, 0.1, 1.0e6)] == ["COMPLETE", "COMPLETE", "FAIL"]
    assert "nan" in by_lr[1.0e6]["error"] or "inf" in by_lr[1.0e6]["error"]
    runs = member_runs(summary.tracking_uri, summary.parent_run_id)
    assert set(runs) == {t["key"] for t in summary.trials}
    assert len({r.data.tags["worker.pid"] for r in runs.values()}) == 1  # the three trained in one actor
    for lr in (0.05, 0.1):
        run = runs[by_lr[lr]["key"]]
        assert run.info.status == "FINISHED"
        assert steps(summary.tracking_uri, run.info.run_id) == [1, 2]
        assert run.data.metrics["val_acc"] == by_lr[lr]["values"]["val_acc"]
        assert run.data.params["lr"] == str(lr)
    failed = runs[by_lr[1.0e6]["key"]]
    assert failed.info.status == "FAILED"
    assert failed.data.tags["error"].startswith("TrainingDiverged: training loss became")
    for lr in (0.05, 1.0e6):
        study = optuna.load_study(study_name=f"packed[lr={lr}]", storage=stores["storage_url"])
        assert len(study.trials) == 1
    assert MlflowClient(summary.tracking_uri).get_run(summary.parent_run_id).data.params["pack"] == "3"

    member = by_lr[0.1]
    alone = train_from_run(member["mlflow_run_id"], summary.tracking_uri)
    logged = runs[member["key"]].data.metrics
    for key in ("test_acc", "val_acc", "train_loss", "sparsity", "theta"):
        assert alone[key] == logged[key], key


def test_asha_stops_members_while_their_packs_go_on(ray_session, tmp_path, stores):
    path = space_file(
        tmp_path, "packasha", base={**BASE, "epochs": 4, "sparsity": SPARSE},
        params={"lr": {"type": "float", "low": 0.003, "high": 0.3, "log": True}},
        num_samples=6, early_stopping={"type": "asha", "grace_period": 1, "reduction_factor": 2},
        max_concurrent=1,  # one pack at a time: members reach the rungs in one order on every machine
    )  # fmt: skip
    summary = run_search(prepare_search(path, **stores), progress=False)
    states = [t["state"] for t in summary.trials]
    assert len(states) == 6
    assert "PRUNED" in states
    assert "COMPLETE" in states
    runs = member_runs(summary.tracking_uri, summary.parent_run_id)
    assert len(runs) == 6
    for trial in summary.trials:
        run = runs[trial["key"]]
        logged = steps(summary.tracking_uri, run.info.run_id)
        assert logged == list(range(1, len(logged) + 1))
        if trial["state"] == "PRUNED":
            assert run.info.status == "KILLED"
            assert len(logged) < 4
        else:
            assert run.info.status == "FINISHED"
            assert len(logged) == 4
    pids = {r.data.tags["worker.pid"] for r in runs.values()}
    assert len(pids) <= 2  # six trials in two packs of three (a reused actor may serve both)


def test_an_interrupted_packed_search_resumes_every_member(search_driver, tmp_path, stores):
    path = space_file(
        tmp_path, "packkill", base={**BASE, "epochs": 6, "sparsity": SPARSE},
        num_samples=4, max_concurrent=1, resources={"cpu": 1, "pack": 2},
    )  # fmt: skip
    s = stores
    driver = search_driver(path, tmp_path)
    done_before: list[str] = []
    deadline = time.time() + 240
    try:
        while time.time() < deadline:  # kill the driver once the first pack finished and the second has a checkpoint
            try:
                study = optuna.load_study(study_name="packkill", storage=s["storage_url"])
                done_before = [t.user_attrs["key"] for t in study.trials if t.state.name == "COMPLETE"]
            except KeyError:  # not created yet
                time.sleep(0.1)
                continue
            recorded = [t for t in study.trials if t.state.name == "RUNNING" and "checkpoint_epoch" in t.user_attrs]
            if len(done_before) >= 2 and recorded:
                break
            time.sleep(0.1)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    assert len(done_before) == 2, done_before
    finished = {
        r.data.tags[TAG_TRIAL]: r.info.start_time
        for r in member_runs(s["tracking_uri"], _parent(s)).values()
        if r.info.status == "FINISHED"
    }

    summary = run_search(prepare_search(path, resume=True, **s), progress=False)
    study = optuna.load_study(study_name="packkill", storage=s["storage_url"])
    superseded = claimed(study.trials)  # the orphans: claimed (FAIL), each continued by a trial queued in its place
    assert superseded
    assert all(study.trials[n].state.name == "FAIL" for n in superseded)
    assert [t.state.name for t in study.trials if t.number not in superseded] == ["COMPLETE"] * 4
    runs = member_runs(s["tracking_uri"], summary.parent_run_id)
    assert len(runs) == 4
    assert all(r.info.status == "FINISHED" for r in runs.values())
    for key, run in runs.items():
        assert steps(s["tracking_uri"], run.info.run_id) == list(range(1, 7))  # one continuous history each
        if key in finished:  # finished before the kill: not re-run
            assert run.info.start_time == finished[key]
            assert "resumed_from_epoch" not in run.data.tags
        else:  # continued from its member checkpoint, not from epoch 0
            assert int(run.data.tags["resumed_from_epoch"]) >= 1


def _parent(stores: dict) -> str:
    client = MlflowClient(stores["tracking_uri"])
    exp = client.get_experiment_by_name("tuneprune")
    assert exp is not None
    (parent,) = client.search_runs([exp.experiment_id], "tags.`tuneprune.kind` = 'search'")
    return parent.info.run_id
