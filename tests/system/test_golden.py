"""The engine reproduces its golden results bit for bit on the CPU (tests/golden/record_engine.py says what they hold).

Recorded before the engine's two copies (solo and packed) become one (issue 20): every
change of the engine must leave these figures as they are, under the pinned kernels that
make them the same on any x86 machine. A value that is meant to change is recorded again
with ``python tests/golden/record_engine.py --write`` and the reason in the commit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "golden"))

from record_engine import GOLDEN, pinned_record


def differences(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Where ``actual`` differs from ``expected``: one line per differing leaf (or missing key)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        out = [f"{path}/{k}: missing" for k in expected.keys() - actual.keys()]
        out += [f"{path}/{k}: unexpected" for k in actual.keys() - expected.keys()]
        for key in sorted(expected.keys() & actual.keys()):
            out += differences(expected[key], actual[key], f"{path}/{key}")
        return out
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        return [
            line
            for i, (e, a) in enumerate(zip(expected, actual, strict=True))
            for line in differences(e, a, f"{path}[{i}]")
        ]
    return [] if expected == actual else [f"{path}: {expected!r} -> {actual!r}"]


def test_differences_names_each_changed_leaf():
    before = {"a": [{"x": 1.0}, {"x": 2.0}], "b": "h"}
    assert differences(before, before) == []
    assert differences(before, {"a": [{"x": 1.0}, {"x": 2.5}], "b": "h"}) == ["/a[1]/x: 2.0 -> 2.5"]
    assert differences(before, {"a": [{"x": 1.0}]}) == ["/b: missing", "/a: [{'x': 1.0}, {'x': 2.0}] -> [{'x': 1.0}]"]


@pytest.mark.slow
def test_the_engine_reproduces_its_golden_results():
    expected = json.loads(GOLDEN.read_text())
    assert len(expected["matrix"]) == 192  # 96 combinations x the CPU and accelerator paths
    assert len(expected["runs"]) == 7
    changed = differences(expected, pinned_record())
    assert not changed, f"{len(changed)} golden values changed, the first: " + "; ".join(changed[:5])
