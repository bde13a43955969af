"""Summaries as JSON and tables as CSV."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

from tuneprune.output.summaries import summary_json, write_rows, write_summary


@dataclass
class Summary:
    name: str
    results_dir: Path
    best: list[dict] = field(default_factory=list)


def test_a_summary_is_json_with_paths_as_strings(tmp_path):
    summary = Summary("demo", tmp_path / "runs", [{"key": "g0-000", "values": {"val_acc": 0.9}}])
    expected = {"name": "demo", "results_dir": str(tmp_path / "runs"), "best": summary.best}
    assert summary_json(summary) == expected
    path = write_summary(summary, tmp_path / "summary.json")
    assert path == tmp_path / "summary.json"
    assert json.loads(path.read_text()) == expected


def test_rows_are_a_csv_with_the_first_rows_columns_and_lists_as_json(tmp_path):
    rows = [{"trial": "g0-000", "acc": 0.5, "layers": [1, 2]}, {"trial": "g0-001", "acc": 0.75, "layers": []}]
    path = write_rows(rows, tmp_path / "new" / "dir" / "trials.csv")
    with open(path, newline="") as fh:
        read = list(csv.DictReader(fh))
    assert read == [
        {"trial": "g0-000", "acc": "0.5", "layers": "[1, 2]"},
        {"trial": "g0-001", "acc": "0.75", "layers": "[]"},
    ]
    assert [json.loads(r["layers"]) for r in read] == [[1, 2], []]


def test_no_rows_is_an_empty_table(tmp_path):
    path = write_rows([], tmp_path / "empty.csv")
    assert list(csv.reader(path.open())) == [[]]
