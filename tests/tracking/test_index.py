"""The index of searches and evolutions: where each name keeps its results and stores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuneprune.tracking.index import INDEX_ENV, index_path, index_results, load_index, lookup, tracking_uris


@pytest.fixture
def index(tmp_path, monkeypatch):
    path = tmp_path / "home" / "index.json"
    monkeypatch.setenv(INDEX_ENV, str(path))
    return path


def test_the_index_is_in_the_home_directory_unless_named(tmp_path, monkeypatch):
    monkeypatch.delenv(INDEX_ENV)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert index_path() == tmp_path / ".tuneprune" / "index.json"
    monkeypatch.setenv(INDEX_ENV, str(tmp_path / "elsewhere.json"))
    assert index_path() == tmp_path / "elsewhere.json"


def test_an_entry_is_found_by_name_or_parent_run_id(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    index_results("demo", "search", Path("runs/demo"), "sqlite:///a.db", "run-1", "sqlite:///o.db")
    entry = {
        "kind": "search",
        "results_dir": str(tmp_path.resolve() / "runs" / "demo"),  # absolute, so found from anywhere
        "tracking_uri": "sqlite:///a.db",
        "storage_url": "sqlite:///o.db",
        "parent_run_id": "run-1",
    }
    assert json.loads(index.read_text()) == {"demo": entry}
    assert lookup("demo") == entry
    assert lookup("run-1") == entry
    assert lookup("other") is None


def test_a_later_entry_of_a_name_replaces_the_earlier(index, tmp_path):
    index_results("demo", "search", tmp_path, "sqlite:///a.db", "run-1")
    index_results("demo", "evolution", tmp_path, "sqlite:///b.db", "run-2")
    assert list(load_index()) == ["demo"]
    assert (lookup("demo") or {}).get("parent_run_id") == "run-2"
    assert lookup("run-1") is None
    assert sorted(p.name for p in index.parent.iterdir()) == ["index.json", "index.json.lock"]  # no scratch file left


def test_tracking_uris_are_most_recent_first_without_repeats(index, tmp_path):
    for name, uri in [("a", "sqlite:///1.db"), ("b", "sqlite:///2.db"), ("c", "sqlite:///1.db"), ("d", "http://x")]:
        index_results(name, "search", tmp_path, uri, f"run-{name}")
    assert tracking_uris() == ["http://x", "sqlite:///1.db", "sqlite:///2.db"]


@pytest.mark.parametrize("content", [None, "not json {", "[1, 2]"])
def test_a_missing_or_unreadable_index_is_empty(index, content):
    if content is not None:
        index.parent.mkdir()
        index.write_text(content)
    assert load_index() == {}
    assert lookup("demo") is None
    assert tracking_uris() == []


def test_an_unwritable_index_does_not_stop_a_search(tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv(INDEX_ENV, str(tmp_path / "a-file" / "index.json"))
    index_results("demo", "search", tmp_path, "sqlite:///a.db", "run-1")
    assert load_index() == {}
