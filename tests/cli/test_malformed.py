"""A corpus of malformed configs and search spaces: exit 2, one line naming the field, nothing started."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

CORPUS = Path(__file__).resolve().parents[1] / "malformed"
CASES = sorted(CORPUS.glob("*.yaml"))


def header(path: Path, key: str) -> str:
    for line in path.read_text().splitlines()[:2]:
        if line.startswith(f"# {key}:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"{path.name}: no '# {key}:' header")


@pytest.fixture(scope="module")
def outcomes() -> dict:
    out = subprocess.run([sys.executable, str(CORPUS / "run_corpus.py")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_corpus_is_large_enough():
    assert len(CASES) >= 30
    assert {header(p, "command") for p in CASES} == {
        "train",
        "search",
        "study",
        "evolve",
        "prune-stochastic",
        "relevance",
    }


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_malformed_input_is_refused_cleanly(outcomes, path):
    result = outcomes[path.name]
    assert result["rc"] == 2
    stderr = result["stderr"].strip()
    assert stderr.count("\n") == 0, stderr  # exactly one line
    assert header(path, "expect") in stderr
    assert "Traceback" not in stderr
    assert result["created"] == []  # no MLflow store, no Optuna store, no results
    assert result["ray"] is False
