"""The trial protocol: requests survive Ray's plain-dict boundary, and one outcome() decides how a trial ended."""

from __future__ import annotations

import pickle

import pytest

from tuneprune.search.protocol import TrialContext, TrialRequest, TrialResult


def test_a_request_round_trips_through_a_picklable_dict(tmp_path):
    context = TrialContext("sqlite:///m.db", "tuneprune", "parent", str(tmp_path), {"val_acc": "max"})
    request = TrialRequest("g0-003", 3, "g0-003 lr=0.01", {"sparsity.target": 0.9}, {"lr": 0.01}, {"epochs": 2}, context)
    config = pickle.loads(pickle.dumps(request.to_dict()))
    assert TrialRequest.from_dict({**config, "__trial_index__": 0}) == request  # keys Ray adds are ignored
    assert request.context.trial_dir("g0-003") == tmp_path / "trials" / "g0-003"


@pytest.mark.parametrize(
    ("reported", "outcome"),
    [
        ({"epoch": 3, "epochs": 3, "val_acc": 0.9}, "finished"),
        ({"epoch": 1, "epochs": 3, "val_acc": 0.5}, "killed"),  # a scheduler stopped it
        ({"epoch": 0, "epochs": 3, "val_acc": float("-inf"), "error": "diverged"}, "failed"),
        ({"epoch": 3, "epochs": 3, "error": ""}, "failed"),  # an empty message is still an error
        ({}, "killed"),  # never reported: not finished
    ],
)
def test_outcome_decides_finished_killed_or_failed(reported, outcome):
    assert TrialResult.from_dict(reported).outcome() == outcome


def test_a_result_keeps_its_metrics_and_only_finite_values_count():
    result = TrialResult(3, 3, "run", None, "g0-001", {"epoch": 3, "val_acc": 0.8, "val_loss": float("nan")})
    again = TrialResult.from_dict(result.to_dict())
    assert again == TrialResult(3, 3, "run", None, "g0-001", {"val_acc": 0.8, "val_loss": again.metrics["val_loss"]})
    assert again.value("val_acc") == 0.8 and again.value("val_loss") is None and again.value("test_acc") is None
