"""RunTracker on a real MLflow store: parent runs by name, child runs by trial key, idempotent params, run ends."""

from __future__ import annotations

import pytest

from tuneprune.shared.config import ConfigError
from tuneprune.tracking import TAG_KIND, TAG_NAME, TAG_TRIAL, RunTracker, find_parent_run
from tuneprune.tracking.runs import MAX_PARAM_CHARS, MAX_TAG_CHARS, TAG_PARENT, flatten


def test_flatten_joins_nested_keys_with_dots():
    assert flatten({"a": {"b": 1, "c": {"d": "x"}}, "e": [1, 2]}) == {"a.b": 1, "a.c.d": "x", "e": [1, 2]}


def test_a_new_parent_is_running_and_tagged_with_its_name_and_kind(tracker):
    run = tracker.client.get_run(tracker.start_parent("demo", "search", resume=False))
    assert run.info.status == "RUNNING"
    assert run.info.run_name == "demo"
    assert run.data.tags[TAG_NAME] == "demo"
    assert run.data.tags[TAG_KIND] == "search"
    assert "version.mlflow" in run.data.tags


def test_a_second_start_of_a_name_is_refused_unless_resumed(tracker):
    first = tracker.start_parent("demo", "search", resume=False)
    tracker.finish(first)
    with pytest.raises(ConfigError, match=f"a search of that name already exists \\(MLflow run {first}\\)"):
        tracker.start_parent("demo", "search", resume=False)
    assert tracker.start_parent("demo", "search", resume=True) == first
    assert tracker.client.get_run(first).info.status == "RUNNING"  # reopened
    assert len(tracker.search(f"tags.`{TAG_NAME}` = 'demo'")) == 1


def test_the_same_name_of_another_kind_is_another_parent(tracker):
    search = tracker.start_parent("demo", "search", resume=False)
    evolution = tracker.start_parent("demo", "evolution", resume=False)
    assert search != evolution
    assert tracker.find_parent("demo", "evolution").info.run_id == evolution


def test_looking_for_a_parent_creates_no_experiment(tracker):
    assert tracker.find_parent("demo", "search") is None
    assert tracker.client.get_experiment_by_name(tracker.experiment_name) is None


def test_a_local_store_keeps_artifacts_beside_its_database(tmp_path):
    tracker = RunTracker(f"sqlite:///{tmp_path}/mlruns.db", "artifacts")
    location = tracker.client.get_experiment(tracker.experiment_id).artifact_location
    assert location == (tmp_path / "mlartifacts").resolve().as_uri()


def test_shared_is_one_tracker_per_store_and_experiment(store_uri):
    assert RunTracker.shared(store_uri, "a") is RunTracker.shared(store_uri, "a")
    assert RunTracker.shared(store_uri, "a") is not RunTracker.shared(store_uri, "b")


def test_a_child_is_found_again_by_its_key_and_reopened(tracker):
    parent = tracker.start_parent("demo", "search", resume=False)
    child, new = tracker.child(parent, "g0-000", "g0-000 lr=0.1", "trial", {"extra": "yes"})
    assert new
    tags = tracker.client.get_run(child).data.tags
    assert (tags[TAG_PARENT], tags[TAG_TRIAL], tags[TAG_KIND], tags["extra"]) == (parent, "g0-000", "trial", "yes")
    tracker.finish(child, "KILLED")
    assert tracker.child(parent, "g0-000", "g0-000 lr=0.1", "trial") == (child, False)
    assert tracker.client.get_run(child).info.status == "RUNNING"
    other, new = tracker.child(parent, "g0-001", "g0-001", "trial")
    assert new
    assert other != child
    assert {r.info.run_id for r in tracker.children(parent)} == {child, other}
    assert tracker.find_child(parent, "g0-001") == other
    assert tracker.find_child(parent, "g0-002") is None


def test_relogging_params_keeps_the_first_values_adds_the_new_and_tags_the_latest(tracker):
    run = tracker.start_parent("demo", "search", resume=False)
    tracker.log_params(run, {"opt": {"lr": 0.1}, "epochs": 3}, tags={"note": "first"}, new_run=True)
    tracker.log_params(run, {"opt": {"lr": 0.2}, "batch": 64, "epochs": 3}, tags={"note": "second"})
    data = tracker.client.get_run(run).data
    assert data.params == {"opt.lr": "0.1", "epochs": "3", "batch": "64"}
    assert data.tags["note"] == "second"
    assert {k: v for k, v in data.tags.items() if k.startswith("latest.")} == {"latest.opt.lr": "0.2"}
    tracker.log_params(run, {"opt": {"lr": 0.3}})
    assert tracker.client.get_run(run).data.tags["latest.opt.lr"] == "0.3"


def test_many_and_long_params_are_all_logged(tracker):
    run = tracker.start_parent("demo", "search", resume=False)
    params = {f"p{i:03d}": i for i in range(250)}  # more than one batch of 100
    tracker.log_params(run, {**params, "long": "x" * (MAX_PARAM_CHARS + 10)}, tags={"t": "y" * (MAX_TAG_CHARS + 10)})
    data = tracker.client.get_run(run).data
    assert {k: v for k, v in data.params.items() if k != "long"} == {k: str(v) for k, v in params.items()}
    assert data.params["long"] == "x" * MAX_PARAM_CHARS
    assert data.tags["t"] == "y" * MAX_TAG_CHARS


def test_log_metrics_logs_only_the_numbers_at_their_step(tracker):
    run = tracker.start_parent("demo", "search", resume=False)
    tracker.log_metrics(run, {"val_acc": 0.5, "epoch": 2, "state": "ok", "missing": None}, step=2, tags={"s": 1})
    tracker.log_metrics(run, {"val_acc": 0.75}, step=3)
    data = tracker.client.get_run(run).data
    assert data.metrics == {"val_acc": 0.75, "epoch": 2.0}
    assert data.tags["s"] == "1"
    assert tracker.logged_steps(run, "val_acc") == {2, 3}
    assert tracker.logged_steps(run, "state") == set()


@pytest.mark.parametrize(("status", "error"), [("FINISHED", None), ("FAILED", "ValueError: bad"), ("KILLED", None)])
def test_finish_ends_with_the_status_and_tags_the_error(tracker, status, error):
    run = tracker.start_parent("demo", "search", resume=False)
    tracker.finish(run, status, error)
    ended = tracker.client.get_run(run)
    assert ended.info.status == status
    assert ended.info.end_time is not None
    assert ended.data.tags.get("error") == error


def test_a_parent_run_is_found_by_id_or_by_name(store_uri, tracker):
    run = tracker.start_parent("findme", "evolution", resume=False)
    assert find_parent_run(store_uri, run, tracker.experiment_name).info.run_id == run
    assert find_parent_run(store_uri, "findme", tracker.experiment_name).info.run_id == run
    with pytest.raises(ConfigError, match="source = 'nothing': no search or evolution of that name or run id"):
        find_parent_run(store_uri, "nothing", tracker.experiment_name)
