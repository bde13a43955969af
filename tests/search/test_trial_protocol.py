"""The trial protocol: requests survive Ray's plain-dict boundary, and one outcome() decides how a trial ended."""

from __future__ import annotations

import pickle
from dataclasses import replace

import pytest

from tuneprune.search.protocol import (
    PackRequest,
    TrialContext,
    TrialRequest,
    TrialResult,
    member_results,
)


def test_a_request_round_trips_through_a_picklable_dict(tmp_path):
    context = TrialContext("sqlite:///m.db", "tuneprune", "parent", str(tmp_path), {"val_acc": "max"})
    request = TrialRequest(
        "g0-003", 3, "g0-003 lr=0.01", {"sparsity.target": 0.9}, {"lr": 0.01}, {"epochs": 2}, context
    )
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
    result = TrialResult(3, 3, "run", None, "g0-001", metrics={"epoch": 3, "val_acc": 0.8, "val_loss": float("nan")})
    again = TrialResult.from_dict(result.to_dict())
    assert again == TrialResult(
        3, 3, "run", None, "g0-001", metrics={"val_acc": 0.8, "val_loss": again.metrics["val_loss"]}
    )
    assert again.value("val_acc") == 0.8
    assert again.value("val_loss") is None
    assert again.value("test_acc") is None


def test_a_pack_request_round_trips_and_names_its_members(tmp_path):
    context = TrialContext("sqlite:///m.db", "tuneprune", "parent", str(tmp_path), {"val_acc": "max"}, "asha-actor")
    members = [
        TrialRequest(f"g0-00{i}", i, f"g0-00{i} lr=0.01", {}, {"lr": 0.01}, {"epochs": 2}, context) for i in range(3)
    ]
    config = pickle.loads(pickle.dumps(PackRequest(members, context).to_dict()))
    assert PackRequest.from_dict(config) == PackRequest(members, context)
    assert [r.key for r in PackRequest.from_dict(config).members] == ["g0-000", "g0-001", "g0-002"]
    resumed = TrialRequest("g0-004", 4, "g0-004", {}, {}, {"epochs": 2}, context, "run-4", resume_epoch=1)
    alone = PackRequest([resumed], context).to_dict()
    assert PackRequest.from_dict(alone).members == [resumed]  # one trial: a pack of one


def test_member_results_are_keyed_by_trial_nested_or_flattened():
    running = TrialResult(1, 3, "r0", None, "g0-000", False, {"val_acc": 0.5})
    failed = TrialResult(1, 3, "r1", "diverged", "g0-001", True, {"val_acc": 0.1})
    packed = member_results(
        {"epoch": 1, "epochs": 3, "members": {"g0-000": running.to_dict(), "g0-001": failed.to_dict()}}
    )
    assert packed == {"g0-000": running, "g0-001": failed}
    assert not packed["g0-000"].ended
    assert packed["g0-001"].ended
    assert packed["g0-001"].outcome() == "failed"
    flat = {f"members/{key}/{name}": value for key, r in packed.items() for name, value in r.to_dict().items()}
    assert member_results(flat) == packed  # as Tune hands reports to searchers
    assert member_results(None) == {}


def test_a_trial_goes_on_from_its_recorded_checkpoint_only_while_that_file_is_there(tmp_path):
    from tuneprune.search.trainable import drop_checkpoints_before, resumable_epoch, trial_checkpoint, trial_checkpoints

    trial_dir = tmp_path / "g0-001"
    assert trial_checkpoints(trial_dir) == {}  # no directory yet
    assert resumable_epoch(trial_dir, 3) == 0
    for epoch in (2, 3, 10):
        trial_checkpoint(trial_dir, epoch).parent.mkdir(exist_ok=True)
        trial_checkpoint(trial_dir, epoch).write_bytes(b"")
    (trial_dir / ".checkpoint-11.pt.x.tmp").write_bytes(b"")  # a save in progress is not a checkpoint
    assert sorted(trial_checkpoints(trial_dir)) == [2, 3, 10]
    assert resumable_epoch(trial_dir, 3) == 3
    assert resumable_epoch(trial_dir, 0) == 0
    drop_checkpoints_before(trial_dir, 10)
    assert sorted(trial_checkpoints(trial_dir)) == [10]
    assert resumable_epoch(trial_dir, 3) == 0  # recorded, then deleted: the trial ended, it starts over
    drop_checkpoints_before(trial_dir)
    assert trial_checkpoints(trial_dir) == {}


def test_a_trial_run_ends_with_the_status_of_its_outcome(tmp_path):
    from tuneprune.tracking import RunTracker

    tracker = RunTracker(f"sqlite:///{tmp_path}/mlruns.db", "protocol")
    experiment = tracker.client.create_experiment("protocol")
    ends = {
        "FINISHED": (TrialResult(epoch=3, epochs=3), None),
        "KILLED": (TrialResult(epoch=1, epochs=3), None),  # stopped early
        "KILLED, never started": (TrialResult(), None),
        "FAILED": (TrialResult(epoch=0, epochs=3, error="loss became nan"), "TrainingDiverged: loss became nan"),
    }
    for name, (result, detail) in ends.items():
        run_id = tracker.client.create_run(experiment, run_name=name).info.run_id
        replace(result, mlflow_run_id=run_id).end_run(tracker, detail)
        run = tracker.client.get_run(run_id)
        assert run.info.status == name.split(",")[0]
        assert run.data.tags.get("error") == detail
