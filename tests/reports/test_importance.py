"""Parameter importances of a search report when its Optuna studies cannot be read (formulas §8); no Ray."""

from __future__ import annotations

from pathlib import Path

from tuneprune.reports.search import study_importances
from tuneprune.reports.source import Source
from tuneprune.reports.trials import SearchData
from tuneprune.search.space import SearchSpace
from tuneprune.shared.config import load_config

ROOT = Path(__file__).resolve().parents[2]


def importances_from(storage_url: str, tmp_path: Path) -> tuple[list, list[str]]:
    summary = {"name": "digits_demo", "storage_url": storage_url, "trials": [], "best": []}
    source = Source("digits_demo", "search", summary, f"sqlite:///{tmp_path / 'mlruns.db'}", tmp_path)
    space = load_config(SearchSpace, ROOT / "search_spaces" / "digits_demo.yaml")
    return study_importances(SearchData(source, space, []))


def test_a_missing_optuna_storage_is_a_note_not_a_crash(tmp_path):
    """A results directory and MLflow store kept without optuna.db: the old code created an empty optuna.db and
    raised KeyError halfway through the report."""
    storage = tmp_path / "optuna.db"
    assert importances_from(f"sqlite:///{storage}", tmp_path) == (
        [], [f"not computable: no Optuna storage at sqlite:///{storage}"]
    )  # fmt: skip
    assert not storage.exists()


def test_an_unreachable_optuna_database_is_a_note_not_a_crash(tmp_path):
    """The search's PostgreSQL out of reach from where the report runs: the old code raised SQLAlchemy's error."""
    url = "postgresql://tuneprune@127.0.0.1:1/optuna"
    rows, notes = importances_from(url, tmp_path)
    assert rows == []
    assert len(notes) == 1
    assert notes[0].startswith(f"not computable: storage = {url!r}: cannot reach 127.0.0.1:1")
