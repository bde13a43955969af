"""What the search and evolution drivers check before Ray starts: the space document and the driver's place."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml

from tuneprune.cluster.drivers import DriverPlace, check_driver, space_document
from tuneprune.shared.config import ConfigError

DIGITS = [("digits", None, False)]


@pytest.fixture
def space(tmp_path):
    path = tmp_path / "my_space.yaml"
    path.write_text(yaml.safe_dump({"base": {"epochs": 2}, "num_samples": 4}))
    return path


def test_the_space_document_takes_the_overrides_and_the_name(space):
    document = space_document(space, ["base.epochs=5", "sampler.seed=3"], "renamed")
    assert document == {"base": {"epochs": 5}, "num_samples": 4, "sampler": {"seed": 3}, "name": "renamed"}
    assert "name" not in space_document(space, None, None)


def test_a_driver_is_named_by_its_space_file_unless_named(space, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    place = check_driver(space, None, DIGITS, (1, 0), address=None, tracking_uri=uri, results_root="runs")
    assert place == DriverPlace("my_space", uri, (Path.cwd() / "runs" / "my_space").resolve())
    place = check_driver(space, "named", DIGITS, (1, 0), address=None, tracking_uri=uri, results_root=tmp_path)
    assert place.results_dir == tmp_path / "named"


def test_a_driver_without_a_store_uses_the_default_one_here(space, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    place = check_driver(space, None, DIGITS, (1, 0), address=None, tracking_uri=None, results_root=tmp_path)
    assert place.tracking_uri == f"sqlite:///{tmp_path.resolve()}/mlruns.db"


@pytest.fixture
def listening():
    """HOST:PORT of a socket that takes connections (a cluster's head, as far as a TCP check goes)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield f"127.0.0.1:{server.getsockname()[1]}"


@pytest.fixture
def closed():
    """HOST:PORT where nothing listens."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
    return f"127.0.0.1:{port}"


def test_local_resources_are_checked_only_without_a_cluster(space, tmp_path, listening):
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    huge = (10_000, 0)
    with pytest.raises(ConfigError, match=r"resources\.cpu = 10000"):
        check_driver(space, None, DIGITS, huge, address=None, tracking_uri=uri, results_root=tmp_path)
    place = check_driver(space, None, DIGITS, huge, address=listening, tracking_uri=uri, results_root=tmp_path)
    assert place.name == "my_space"  # a cluster may autoscale


def test_a_cluster_address_that_takes_no_connection_is_refused_at_once(space, tmp_path, closed, monkeypatch):
    """``--address HOST:PORT`` (or ``auto`` with ``RAY_ADDRESS``) where no Ray head listens: one line naming it,
    before anything starts, instead of ``ray.init`` trying for minutes and ending in a traceback."""
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    with pytest.raises(ConfigError, match=rf"^address = '{closed}': cannot reach {closed} \("):
        check_driver(space, None, DIGITS, (1, 0), address=closed, tracking_uri=uri, results_root=tmp_path)
    monkeypatch.setenv("RAY_ADDRESS", closed)
    with pytest.raises(ConfigError, match=rf"^RAY_ADDRESS = '{closed}': cannot reach"):
        check_driver(space, None, DIGITS, (1, 0), address="auto", tracking_uri=uri, results_root=tmp_path)


@pytest.mark.parametrize(
    ("data", "uri", "message"),
    [
        ([*DIGITS, ("cifar10", None, False)], None, "data_dir: required for cifar10"),
        (DIGITS, "sqlite:////no/such/dir/mlruns.db", "tracking_uri = .*does not exist"),
    ],
)
def test_bad_data_or_store_is_refused(space, tmp_path, data, uri, message):
    with pytest.raises(ConfigError, match=message):
        check_driver(space, None, data, (1, 0), address=None, tracking_uri=uri, results_root=tmp_path)
