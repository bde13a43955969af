"""Run artifacts back from the store: download_artifact, locate_run and run_config_from_mlflow."""

from __future__ import annotations

import json

import pytest

from tuneprune.shared.config import ConfigError
from tuneprune.tracking import download_artifact, locate_run, run_config_from_mlflow
from tuneprune.tracking.index import INDEX_ENV, index_results


@pytest.fixture
def run_with_config(tracker):
    """A run that logged ``config.json``, as a trial does."""
    run_id = tracker.client.create_run(tracker.experiment_id).info.run_id
    tracker.log_text(run_id, json.dumps({"model": "small_cnn", "epochs": 2}), "config.json")
    return run_id


def test_an_artifact_is_downloaded_into_the_destination(store_uri, run_with_config, tmp_path):
    local = download_artifact("--from-run X", store_uri, run_with_config, "config.json", tmp_path)
    assert local == tmp_path / "config.json"
    assert json.loads(local.read_text()) == {"model": "small_cnn", "epochs": 2}


def test_a_missing_artifact_is_one_line_starting_with_the_label(store_uri, run_with_config, tmp_path):
    with pytest.raises(ConfigError) as caught:
        download_artifact("source = 'demo'", store_uri, run_with_config, "nothing.json", tmp_path)
    message = str(caught.value)
    assert message.startswith(f"source = 'demo': run {run_with_config} has no nothing.json artifact in {store_uri}")
    assert "\n" not in message


def test_a_given_tracking_uri_is_used_as_is():
    assert locate_run("any", "http://server:5000") == "http://server:5000"


def test_a_given_sqlite_store_that_does_not_exist_is_refused_not_created(tmp_path):
    """A mistyped ``--tracking-uri sqlite:///PATH`` names the store, instead of creating an empty one there."""
    typo = tmp_path / "typo" / "mlruns.db"
    with pytest.raises(ConfigError, match=f"--from-run abc: no MLflow store at sqlite:///{typo}"):
        run_config_from_mlflow("abc", f"sqlite:///{typo}")
    assert not typo.parent.exists()


def test_a_run_is_located_in_a_store_the_index_recorded(store_uri, run_with_config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no mlruns.db here
    monkeypatch.setenv(INDEX_ENV, str(tmp_path / "index.json"))
    with pytest.raises(
        ConfigError, match=f"--from-run {run_with_config}: no such MLflow run in .*; pass --tracking-uri"
    ):
        locate_run(run_with_config, None)
    index_results("demo", "search", tmp_path, f"sqlite:///{tmp_path}/gone.db", "run-0")  # a store since deleted
    index_results("demo2", "search", tmp_path, store_uri, "run-1")
    assert locate_run(run_with_config, None) == store_uri
    assert run_config_from_mlflow(run_with_config, None) == {"model": "small_cnn", "epochs": 2}
