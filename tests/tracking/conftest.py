"""One MLflow store on SQLite per test module (creating its schema takes a second); one experiment per test."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def store_uri(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlruns.db"


@pytest.fixture
def tracker(store_uri, request):
    from tuneprune.tracking import RunTracker

    return RunTracker(store_uri, request.node.name)
