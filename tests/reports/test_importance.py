"""Parameter importances of a search report when its Optuna studies cannot be read (formulas §8); no Ray."""

from __future__ import annotations

from pathlib import Path

from tuneprune.reports.importance import study_importances
from tuneprune.reports.source import Source
from tuneprune.reports.trials import SearchData
from tuneprune.search.space import SearchSpace
from tuneprune.shared.config import load_config

ROOT = Path(__file__).resolve().parents[2]


def test_a_missing_optuna_storage_is_a_note_not_a_crash(tmp_path):
    """A results directory and MLflow store kept without optuna.db (moved, or the search's PostgreSQL out of reach): the
    old code created an empty optuna.db and raised KeyError halfway through the report."""
    storage = tmp_path / "optuna.db"
    summary = {"name": "digits_demo", "storage_url": f"sqlite:///{storage}", "trials": [], "best": []}
    source = Source("digits_demo", "search", summary, f"sqlite:///{tmp_path / 'mlruns.db'}", tmp_path)
    space = load_config(SearchSpace, ROOT / "search_spaces" / "digits_demo.yaml")
    rows, notes = study_importances(SearchData(source, space, []))
    assert rows == []
    assert notes == [f"not computable: no Optuna storage at sqlite:///{storage}"]
    assert not storage.exists()
