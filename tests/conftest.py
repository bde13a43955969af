"""Shared fixtures: one local Ray per test session, telemetry off, small digits configs.

The Ray tier: a test that starts Ray carries the ``ray`` marker, so that ``-m "not ray"``
starts none (CONTRIBUTING.md, "The inner loop"). A test that uses ``ray_session``, directly
or through another fixture (``search_driver``, a module's own), is marked here; one that
starts Ray another way (a script, or a command without ``--address``) is marked by hand. An
unmarked test that starts Ray in this process fails (seen where Ray is not up already, as in
a ``-m "not ray"`` run).
"""

from __future__ import annotations

import logging
import os
import sys

import pytest

for _var, _value in (("RAY_USAGE_STATS_ENABLED", "0"), ("MLFLOW_DISABLE_TELEMETRY", "true"), ("DO_NOT_TRACK", "1")):
    os.environ.setdefault(_var, _value)
os.environ.setdefault("MPLBACKEND", "Agg")

RAY_UP_BEFORE = pytest.StashKey[bool]()


def ray_is_up() -> bool:
    """Whether Ray is initialised in this process (without importing it: importing ray takes seconds)."""
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


@pytest.hookimpl(tryfirst=True)  # before pytest's own hook deselects by -m
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that uses ``ray_session``, directly or through another fixture, is in the Ray tier."""
    for item in items:
        if "ray_session" in getattr(item, "fixturenames", ()) and item.get_closest_marker("ray") is None:
            item.add_marker(pytest.mark.ray)


@pytest.hookimpl(tryfirst=True)  # before the test's fixtures are set up
def pytest_runtest_setup(item: pytest.Item) -> None:
    item.stash[RAY_UP_BEFORE] = ray_is_up()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None):
    """Fail a test without the ``ray`` marker that started Ray in this process (after its fixtures are torn down)."""
    started = not item.stash.get(RAY_UP_BEFORE, True) and ray_is_up()
    result = yield
    if started and item.get_closest_marker("ray") is None:
        sys.modules["ray"].shutdown()  # the next unmarked test is checked afresh
        pytest.fail(f"{item.nodeid} started Ray without the ray marker: mark it @pytest.mark.ray", pytrace=False)
    return result


@pytest.fixture(scope="session", autouse=True)
def search_index(tmp_path_factory):
    """The index of searches (``TUNEPRUNE_INDEX``) in a session directory, never the user's ``~/.tuneprune``."""
    path = tmp_path_factory.mktemp("index") / "index.json"
    os.environ["TUNEPRUNE_INDEX"] = str(path)
    yield path
    os.environ.pop("TUNEPRUNE_INDEX", None)


@pytest.fixture
def single_thread():
    """One torch thread: tiny models gain nothing from threads, and a busy machine does not stall them."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance (2 CPUs) shared by every test that needs Ray."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def dense_digits(tmp_path_factory):
    """small_cnn trained once per session on digits (about 99% test accuracy): ``(model file, TrainResult)``."""
    from tuneprune.training import RunConfig, save_model, train

    config = RunConfig(model="small_cnn", dataset="digits", epochs=3, batch_size=64, lr=0.05)
    result = train(config)
    path = tmp_path_factory.mktemp("dense") / "model.pt"
    save_model(result.model, config.model_dump(mode="json"), path, result.num_classes, result.in_channels, result.final)
    return path, result


@pytest.fixture
def indexed_model_run(dense_digits, tmp_path, monkeypatch) -> str:
    """The id of an MLflow run holding ``dense_digits``' ``model.pt`` (as a search trial does) in a store that only the
    index of searches (``TUNEPRUNE_INDEX``) records; the working directory is another, without a store."""
    from tuneprune.tracking import RunTracker
    from tuneprune.tracking.index import INDEX_ENV, index_results

    store = tmp_path / "search" / "mlruns.db"
    store.parent.mkdir()
    tracker = RunTracker(f"sqlite:///{store}", "tuneprune")
    run_id = tracker.client.create_run(tracker.experiment_id).info.run_id
    tracker.log_artifact(run_id, dense_digits[0])
    monkeypatch.setenv(INDEX_ENV, str(tmp_path / "index.json"))
    index_results("demo", "search", tmp_path / "search", f"sqlite:///{store}", run_id)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    return run_id


@pytest.fixture
def stores(tmp_path) -> dict:
    """A fresh MLflow SQLite store, Optuna SQLite storage and results root, as ``prepare_search`` keywords."""
    return {
        "tracking_uri": f"sqlite:///{tmp_path / 'mlruns.db'}",
        "storage_url": f"sqlite:///{tmp_path / 'optuna.db'}",
        "results_root": tmp_path / "runs",
    }


@pytest.fixture
def search_driver(ray_session, stores):
    """Start ``tuneprune search SPACE`` (or ``study``) as a separate driver process on the session's Ray, with ``stores``."""
    import subprocess
    import sys

    address = ray_session.get_runtime_context().gcs_address

    def start(space: str, cwd, command: str = "search") -> subprocess.Popen:
        cmd = [sys.executable, "-m", "tuneprune.cli", command, space, "--address", address, "--no-progress",
               "--tracking-uri", stores["tracking_uri"], "--storage", stores["storage_url"],
               "--results-dir", str(stores["results_root"])]  # fmt: skip
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=cwd)

    return start


@pytest.fixture
def train_from_run():
    """``tuneprune train --from-run RUN_ID --json`` as typed: the reproduced run's final metrics."""
    import json
    import subprocess
    import sys

    def run(run_id: str, tracking_uri: str) -> dict:
        out = subprocess.run(
            [sys.executable, "-m", "tuneprune.cli", "train", "--from-run", run_id, "--tracking-uri", tracking_uri, "--json"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    return run
