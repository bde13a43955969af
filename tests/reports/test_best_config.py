"""A search report's best.yaml (docs/reports.md): the best trial in the first objective, a tie to the lowest key."""

from __future__ import annotations

import pytest
import yaml

from tuneprune.reports import Report
from tuneprune.reports.search import best_config
from tuneprune.reports.source import Source
from tuneprune.reports.trials import SearchData
from tuneprune.search.space import SearchSpace
from tuneprune.shared.config import validate


@pytest.mark.parametrize("direction", ["max", "min"])
def test_a_tie_for_best_yaml_goes_to_the_lowest_trial_key(direction, tmp_path):
    """Of equal values the trial of the lowest key wins, whatever order summary.json lists the grid points' best trials
    in (a grid point added before the others on --resume keeps its new index, g2, and is listed first): best.yaml
    was the first listed."""
    best = [
        {
            "key": key,
            "grid": {},
            "params": {},
            "values": {"val_loss": 0.25},
            "config": {"model": "small_cnn", "seed": i},
        }
        for i, key in enumerate(["g2-000", "g10-000", "g0-001"])
    ]
    summary = {
        "name": "s",
        "parent_run_id": "0" * 32,
        "objectives": {"val_loss": direction},
        "trials": [],
        "best": best,
    }
    source = Source("s", "search", summary, f"sqlite:///{tmp_path / 'absent.db'}", tmp_path)
    space = validate(SearchSpace, {"objectives": {"val_loss": direction}, "grid": {"seed": [0, 1, 2]}})
    report = Report("s", tmp_path / "report")
    best_config(report, SearchData(source, space, []))
    assert yaml.safe_load((tmp_path / "report" / "best.yaml").read_text())["seed"] == 2
    assert "Trial g0-001 (val_loss = 0.2500)" in "".join(report.blocks)
