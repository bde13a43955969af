"""The plain-Feather baseline of a search report: which trials are Feather as published (formulas §1, §9)."""

from __future__ import annotations

import pytest

from tuneprune.reports.search import is_plain_feather
from tuneprune.reports.trials import Trial
from tuneprune.runs.spec import TrialSpec
from tuneprune.shared.config import validate


def trial_of(sparsity: dict[str, object] | None) -> Trial:
    """A complete trial whose run config has the ``sparsity:`` mapping given (None: a dense trial)."""
    config = validate(TrialSpec, {} if sparsity is None else {"sparsity": sparsity})
    return Trial("g0-000", {}, {}, "COMPLETE", {}, None, config)


@pytest.mark.parametrize(
    "changed",
    [
        {"operator_p": 1.0}, {"operator_p": "inf"}, {"threshold": "layer"}, {"min_size": 100},
        {"scheduler": {"end_fraction": 0.8}}, {"scheduler": {"start_epoch": 1.0}},
        {"scheduler": {"type": "adaptive", "preset": "lambda1"}}, {"theta": {"policy": "constant", "value": 0.5}},
        {"drop": {"rho": 0.5}},
    ],
)  # fmt: skip
def test_a_trial_off_feathers_recipe_is_not_the_plain_feather_baseline(changed):
    """formulas §1, §9: Feather fixes p = 3, the global threshold, every layer pruned, the feather theta rule and the
    cubic schedule from epoch 0 to half of training, with no elimination; a trial that changes one is not Feather."""
    assert is_plain_feather(trial_of({"target": 0.95}))
    assert not is_plain_feather(trial_of({"target": 0.95, **changed}))


def test_fields_feather_leaves_free_keep_a_trial_plain_feather():
    """The target is the baseline's axis; alpha, the drop mode and the adaptive preset do nothing under Feather."""
    assert is_plain_feather(trial_of({"target": 0.99, "theta": {"alpha": 0.3}, "drop": {"mode": "layer"}}))
    assert not is_plain_feather(trial_of(None))
