"""The MLflow records of a relevance study: no run is left RUNNING, whatever ends the logging of a curve."""

from __future__ import annotations

import pytest
from mlflow.exceptions import MlflowException

from tuneprune.relevance.tracking import KIND, StudyTracker
from tuneprune.tracking import RunTracker


def test_a_curve_whose_logging_fails_leaves_no_child_run_running(tmp_path):
    """The child run of a curve opened, then its logging stopped (Ctrl-C, a store error): on the old code it stayed
    RUNNING after the command had ended. The store refuses a metric name here, the way to make it stop."""
    tracker = RunTracker(f"sqlite:///{tmp_path}/mlruns.db", "tuneprune")
    study = StudyTracker(tracker, "study")
    study.start(tracker.start_parent("study", KIND, resume=False), {}, {})
    with pytest.raises(MlflowException):
        study.log_curve("relevance", [{"percentage": 10, "acc": 0.5, "not a metric name?": 1.0}])
    (child,) = tracker.children(study.parent_id)
    assert child.info.status == "FAILED"
