"""Faults survived with real processes: killed workers and drivers, diverging trials, unreachable stores."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import optuna
import pytest
import sqlalchemy
import yaml
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from sqlalchemy.exc import OperationalError

from tuneprune.search import prepare_search, run_search
from tuneprune.search.studies import claimed
from tuneprune.tracking import TAG_KIND, TAG_TRIAL

RESNET_DIGITS = {"model": "resnet20", "dataset": "digits", "image_size": 8, "batch_size": 64}


def space_file(tmp_path, name: str, **fields) -> str:
    doc = {"name": name, "params": {"momentum": {"type": "categorical", "choices": [0.9]}}, **fields}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def trial_runs(tracking_uri: str) -> list:
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name("tuneprune")
    if exp is None:
        return []
    return client.search_runs([exp.experiment_id], f"tags.`{TAG_KIND}` = 'trial'")


def checkpoint_epoch(results_root) -> int:
    """The epoch of the one trial's latest checkpoint on disk (0 without one); written atomically (renamed into
    place), so one that is there is whole, and it holds the epoch its name says."""
    from tuneprune.search.trainable import trial_checkpoints
    from tuneprune.training.checkpoint import load_file

    files = {e: p for d in results_root.glob("*/trials/*") for e, p in trial_checkpoints(d).items()}
    return int(load_file(files[max(files)])["epoch"]) if files else 0


# When to kill: at least this many epochs checkpointed on disk and logged in MLflow. While the
# trial starts, once epoch 2's checkpoint is on disk, once epoch 2's metrics are logged.
KILL_MOMENTS = {"starting": (0, 0), "saved": (2, 0), "logged": (2, 2)}


@pytest.mark.ray
@pytest.mark.parametrize("moment", sorted(KILL_MOMENTS))
def test_worker_killed_mid_trial_restarts_from_its_checkpoint(ray_session, tmp_path, stores, moment):
    """Formulas §10.8: a killed worker loses at most the epoch in flight, and the metric history stays whole.

    The worker is paused (SIGSTOP) between short slices of work; the kill condition is checked
    and the state it is killed in (epoch of the checkpoint on disk, epochs logged) is read
    while it is paused, so the assertions hold whatever instant of an epoch the kill lands on,
    on any machine: what is seen does not depend on how fast the worker runs.
    """
    epochs = 5
    base = {"model": "small_cnn", "dataset": "digits", "batch_size": 64, "epochs": epochs}
    path = space_file(tmp_path, "workerkill", base=base, num_samples=1, max_failures=2)
    uri = stores["tracking_uri"]
    min_saved, min_logged = KILL_MOMENTS[moment]
    killed: dict = {}

    def kill_if_due(pid: int, run_id: str) -> bool:
        """With the worker paused: kill it if the moment has come (recording the state it dies in)."""
        saved = checkpoint_epoch(stores["results_root"])
        if saved < min_saved:
            return False
        try:
            logged = len(client.get_metric_history(run_id, "val_acc"))
        except (MlflowException, OperationalError):  # the paused worker holds the store's lock: after the next slice
            return False
        if logged < min_logged:
            return False
        killed.update(pid=pid, saved=saved, logged=logged)
        os.kill(pid, signal.SIGKILL)
        return True

    def killer() -> None:
        deadline = time.time() + 240
        while time.time() < deadline:
            runs = trial_runs(uri) if (tmp_path / "mlruns.db").exists() else []
            if runs and "worker.pid" in runs[0].data.tags:
                pid, run_id = int(runs[0].data.tags["worker.pid"]), runs[0].info.run_id
                try:
                    while time.time() < deadline:
                        os.kill(pid, signal.SIGSTOP)
                        if kill_if_due(pid, run_id):
                            return
                        os.kill(pid, signal.SIGCONT)
                        time.sleep(0.02)
                except ProcessLookupError:  # the worker ended before the moment came: the test fails below
                    return
                finally:
                    if not killed:  # never leave the worker paused
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGCONT)
            time.sleep(0.05)

    client = MlflowClient(uri)
    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    summary = run_search(prepare_search(path, **stores), progress=False)
    thread.join(timeout=5)
    assert killed, "the worker was never killed"
    assert [t["state"] for t in summary.trials] == ["COMPLETE"]
    (run,) = trial_runs(uri)
    assert run.info.status == "FINISHED"
    assert int(run.data.tags["worker.pid"]) != killed["pid"]
    # Resumed from the last checkpoint Tune committed: the one on disk or the one before it.
    resumed = int(run.data.tags.get("resumed_from_epoch", 0))  # no tag: restarted before any checkpoint
    assert killed["saved"] - 1 <= resumed <= killed["saved"], (resumed, killed)
    # An epoch's metrics are logged before its checkpoint is committed: at most the one in flight is redone.
    assert resumed >= killed["logged"] - 1, (resumed, killed)
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_acc")]
    assert sorted(steps) == list(range(1, epochs + 1))  # each epoch exactly once: none redone twice, none lost


@pytest.mark.ray
def test_killed_driver_resumes_without_rerunning_or_duplicating(search_driver, tmp_path, stores):
    path = space_file(
        tmp_path, "driverkill", base={**RESNET_DIGITS, "epochs": 3},
        params={"lr": {"type": "float", "low": 0.02, "high": 0.2, "log": True}}, num_samples=3, max_concurrent=2,
    )  # fmt: skip
    s = stores
    driver = search_driver(path, tmp_path)
    done_before: list[int] = []
    deadline = time.time() + 240
    try:
        while time.time() < deadline:
            try:
                study = optuna.load_study(study_name="driverkill", storage=s["storage_url"])
                done_before = [t.number for t in study.trials if t.state.name == "COMPLETE"]
            except KeyError:
                pass
            if done_before:
                break
            time.sleep(0.2)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    assert 1 <= len(done_before) < 3, done_before
    finished_before = {
        r.data.tags[TAG_TRIAL]: r.info.start_time for r in trial_runs(s["tracking_uri"]) if r.info.status == "FINISHED"
    }

    summary = run_search(prepare_search(path, resume=True, **s), progress=False)
    study = optuna.load_study(study_name="driverkill", storage=s["storage_url"])
    superseded = claimed(study.trials)  # the orphans: claimed (FAIL), each continued by a trial queued in its place
    assert all(study.trials[n].state.name == "FAIL" for n in superseded)
    assert [t.state.name for t in study.trials if t.number not in superseded] == ["COMPLETE"] * 3
    assert [t["state"] for t in summary.trials] == ["COMPLETE"] * 3  # listed once, under their keys
    runs = [r for r in trial_runs(s["tracking_uri"]) if r.data.tags["mlflow.parentRunId"] == summary.parent_run_id]
    assert len(runs) == 3
    assert len({r.data.tags[TAG_TRIAL] for r in runs}) == 3
    assert all(r.info.status == "FINISHED" for r in runs)
    for run in runs:  # trials finished before the kill were not re-run
        key = run.data.tags[TAG_TRIAL]
        if key in finished_before:
            assert run.info.start_time == finished_before[key]
            assert "resumed_from_epoch" not in run.data.tags or int(run.data.tags["resumed_from_epoch"]) == 3
    parent = MlflowClient(s["tracking_uri"]).get_run(summary.parent_run_id)
    assert parent.info.status == "FINISHED"


@pytest.mark.ray
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "kill"])
def test_an_interrupted_search_ends_killed_with_no_run_left_running(stop, search_driver, tmp_path, stores):
    """Ctrl-C (SIGINT) or ``kill`` (SIGTERM) while a trial trains: the command says so (exit 130), its parent run
    and the runs of its trials end KILLED, none is left RUNNING, and no summary is written as if it had finished."""
    path = space_file(tmp_path, "ctrlc", base={**RESNET_DIGITS, "epochs": 50}, num_samples=2, max_concurrent=1)
    driver = search_driver(path, tmp_path)
    try:
        deadline = time.time() + 240
        while checkpoint_epoch(stores["results_root"]) < 1 and time.time() < deadline:
            time.sleep(0.2)
        driver.send_signal(stop)
        code = driver.wait(timeout=120)
    finally:
        driver.kill()
    assert code == 130
    client = MlflowClient(stores["tracking_uri"])
    experiment = client.get_experiment_by_name("tuneprune")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert {r.data.tags[TAG_KIND]: r.info.status for r in runs if r.data.tags[TAG_KIND] == "search"} == {
        "search": "KILLED"
    }
    assert [r.info.status for r in runs if r.info.status == "RUNNING"] == []
    assert not (stores["results_root"] / "ctrlc" / "summary.json").exists()


@pytest.mark.ray
def test_diverging_trial_fails_alone(ray_session, tmp_path, stores):
    path = space_file(
        tmp_path, "diverge", base={"model": "small_cnn", "dataset": "digits", "epochs": 3, "batch_size": 64, "grad_clip": None},
        grid={"lr": [0.05, 1.0e6]}, num_samples=1,
    )  # fmt: skip
    summary = run_search(prepare_search(path, **stores), progress=False)
    by_lr = {t["grid"]["lr"]: t for t in summary.trials}
    assert by_lr[0.05]["state"] == "COMPLETE"
    assert by_lr[1.0e6]["state"] == "FAIL"
    assert "nan" in by_lr[1.0e6]["error"] or "inf" in by_lr[1.0e6]["error"]
    client = MlflowClient(summary.tracking_uri)
    failed = client.get_run(by_lr[1.0e6]["mlflow_run_id"])
    assert failed.info.status == "FAILED"
    assert "TrainingDiverged" in failed.data.tags["error"]
    assert client.get_run(by_lr[0.05]["mlflow_run_id"]).info.status == "FINISHED"


@pytest.fixture
def silent_port():
    """A loopback port that accepts connections and never answers: the timeout path."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    yield server.getsockname()[1]
    server.close()


@pytest.mark.parametrize(
    ("flag", "url"),
    [
        ("--tracking-uri", "http://127.0.0.1:9"),
        ("--tracking-uri", "http://127.0.0.1:{silent}"),
        ("--storage", "postgresql://user@127.0.0.1:9/optuna"),
        ("--tracking-uri", "sqlite:////nonexistent/dir/mlruns.db"),
    ],
)
def test_unreachable_store_is_reported_before_any_work(tmp_path, silent_port, flag, url):
    """One line and exit 2, no search started. A server that never answers is given up after the check's
    own timeout (``CHECK_TIMEOUT_S``), named as such: no wall clock is read, the 120 s only ends a hang."""
    silent = "{silent}" in url
    url = url.format(silent=silent_port)
    path = space_file(tmp_path, "unreachable", base={"model": "small_cnn", "epochs": 1})
    out = subprocess.run(
        [sys.executable, "-m", "tuneprune.cli", "search", path, flag, url],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0
    assert url in out.stderr
    assert ("timed out" in out.stderr) == silent
    assert not (tmp_path / "runs").exists()


def test_corrupt_checkpoint_is_named(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"\x80\x02 not a checkpoint")
    out = subprocess.run(
        [sys.executable, "-m", "tuneprune.cli", "train", "--set", "epochs=1", "--out", str(tmp_path), "--resume"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2
    assert str(tmp_path / "checkpoint.pt") in out.stderr
    assert "corrupt" in out.stderr


@pytest.mark.ray
def test_evolution_killed_mid_generation_resumes_to_the_same_front(ray_session, dense_digits, tmp_path):
    from tuneprune.evolution import prepare_evolution, run_evolution
    from tuneprune.training.checkpoint import load_file

    doc = {
        "train": {"model": "small_cnn", "dataset": "digits", "epochs": 3, "batch_size": 64},
        "algorithm": {"type": "nsga2", "pop_size": 6, "generations": 4, "seed": 3},
        "variables": {"rate": {"low": 0.5, "high": 0.97}},
        "samples": 2,
    }
    path = tmp_path / "evo.yaml"
    path.write_text(yaml.safe_dump(doc))
    store = {"tracking_uri": f"sqlite:///{tmp_path / 'mlruns.db'}", "results_root": tmp_path / "runs"}
    address = ray_session.get_runtime_context().gcs_address
    cmd = [sys.executable, "-m", "tuneprune.cli", "evolve", str(path), "--name", "killed", "--address", address,
           "--checkpoint", str(dense_digits[0]), "--tracking-uri", store["tracking_uri"],
           "--results-dir", str(store["results_root"]), "--no-progress"]  # fmt: skip
    driver = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    state = tmp_path / "runs" / "killed" / "state.pt"
    generation = 0
    try:
        deadline = time.time() + 240
        while time.time() < deadline and generation < 1 and driver.poll() is None:
            if state.exists():
                generation = int(load_file(state)["generation"])
            time.sleep(0.1)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    assert 1 <= generation < 4, generation  # killed with generations still to run

    resumed = run_evolution(
        prepare_evolution(path, name="killed", resume=True, checkpoint=dense_digits[0], **store), progress=False
    )
    straight = run_evolution(
        prepare_evolution(path, name="straight", checkpoint=dense_digits[0], **store), progress=False
    )

    def points(summary):
        return [(r["sigma"], r["rate"], r["accuracy"], r["sparsity"]) for r in summary.front]

    assert points(resumed) == points(straight)
    assert resumed.hypervolume == straight.hypervolume


def test_an_unreachable_storage_is_waited_for_and_other_errors_are_not(capsys):
    from tuneprune.search.studies import retry_unreachable

    lost = OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))
    attempts = []

    def flaky() -> str:
        attempts.append(time.monotonic())
        if len(attempts) < 3:
            raise optuna.exceptions.StorageInternalError("commit failed") from lost  # as RDBStorage raises it
        return "told"

    assert retry_unreachable(flaky, "telling trial g0-000", patience_s=30) == "told"
    assert len(attempts) == 3
    said = capsys.readouterr().err
    assert said.count("the Optuna storage is unreachable while telling trial g0-000") == 2
    assert "trying again in 0.5 s" in said  # waits that double
    assert "trying again in 1 s" in said
    assert "(OperationalError)" in said  # the error behind Optuna's is named

    left_invalid = sqlalchemy.exc.PendingRollbackError("Can't reconnect until invalid transaction is rolled back")
    attempts.clear()

    def after_restart() -> str:  # what a lost connection leaves behind: retried as well
        attempts.append(time.monotonic())
        if len(attempts) < 2:
            raise optuna.exceptions.StorageInternalError("commit failed") from left_invalid
        return "asked"

    assert retry_unreachable(after_restart, "asking for a trial", patience_s=30) == "asked"
    assert "(PendingRollbackError)" in capsys.readouterr().err

    def broken() -> None:
        attempts.append(time.monotonic())
        raise ValueError("a bug, not a lost connection")

    attempts.clear()
    with pytest.raises(ValueError, match="a bug"):
        retry_unreachable(broken, "asking for a trial", patience_s=30)
    assert len(attempts) == 1

    def down() -> None:
        raise lost

    with pytest.raises(OperationalError):  # gives up once the next wait would pass its patience
        retry_unreachable(down, "asking for a trial", patience_s=2)
    assert capsys.readouterr().err.count("trying again") == 2  # 0.5 s and 1 s; 2 s more would pass 2 s


def test_an_ask_cut_short_is_handed_out_again_not_asked_twice(tmp_path):
    from tuneprune.search.studies import CONTINUES, GridStudy, open_storage

    url = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(storage=url, study_name="cut")
    handed_out = study.ask()
    handed_out.set_user_attr("key", "g0-000")
    handed_out.set_user_attr("name", "g0-000 lr=0.1")
    keyed_only = study.ask()  # the connection was lost between its key and its name
    keyed_only.set_user_attr("key", "g0-001")
    bare = study.ask()  # lost inside ask
    told = study.ask()
    told.set_user_attr("name", "g0-003")
    study.tell(told, 1.0)
    grid_study = GridStudy(0, {}, study, budget=4, storage=open_storage(url))
    grid_study.adopt_cut_short()
    grid_study.adopt_cut_short()  # twice: each once
    queued = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert [t.user_attrs[CONTINUES] for t in queued] == [keyed_only.number, bare.number]
    assert queued[0].user_attrs["key"] == "g0-001"  # it goes on under its key, and is named when handed out
    assert "name" not in queued[0].user_attrs
    assert grid_study.remaining == 2  # four trials: two queued, one handed out, one told
