"""Checkpoints of pack members: a resumed member trains what it would have trained unstopped (CPU, digits, small CNN).

Tolerance: none. On the CPU with the default (``loop``) forward each member's arithmetic
is its own row's, independent of the other members (``tests/training/test_packing.py``), and a
state restores everything the next epoch reads, so histories (times aside) and final
weights are bit for bit those of the uninterrupted pack, in any pack composition.
"""

from __future__ import annotations

import pytest
import torch

from tests.training.test_packing import ADAPTIVE_DROP, DENSE, GLOBAL_CUBIC, config, without_times
from tuneprune.runs.spec import TrialSpec
from tuneprune.shared.config import ConfigError
from tuneprune.training import PackedTrainer, load_member, save_member, train, train_packed
from tuneprune.training.checkpoint import CHECKPOINT_NAME, config_differences, save_atomic

EPOCHS = 3
# Adaptive after one warm-up epoch: resuming at epoch 1 needs the schedule's reference mu and the last masks.
ADAPTIVE_AFTER_WARMUP = {
    **ADAPTIVE_DROP,
    "sparsity": {
        **ADAPTIVE_DROP["sparsity"],
        "scheduler": {"type": "adaptive", "preset": "lambda1", "warmup_epochs": 1},
    },
}
CONFIGS = [
    config(GLOBAL_CUBIC, epochs=EPOCHS),
    config(ADAPTIVE_AFTER_WARMUP, epochs=EPOCHS),
    config(DENSE, epochs=EPOCHS),
]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The pack trained to the end; every member saved after every epoch (``{member}-{epoch}.pt``)."""
    directory = tmp_path_factory.mktemp("members")
    trainer = PackedTrainer(CONFIGS)

    def save(member_index: int, metrics: dict[str, float]) -> None:
        save_member(trainer.member_state(member_index), directory / f"{member_index}-{int(metrics['epoch'])}.pt")

    return trainer.run([save]), directory


def assert_same_member(resumed, unstopped) -> None:
    assert resumed.status == unstopped.status == "finished"
    assert [without_times(h) for h in resumed.history] == [without_times(h) for h in unstopped.history]
    resumed_state, unstopped_state = resumed.result.model.state_dict(), unstopped.result.model.state_dict()
    assert resumed_state.keys() == unstopped_state.keys()
    assert all(torch.equal(resumed_state[name], unstopped_state[name]) for name in unstopped_state)


@pytest.mark.parametrize("epoch", [1, 2])
def test_a_resumed_pack_trains_as_if_never_stopped(uninterrupted, epoch):
    members, directory = uninterrupted
    states = [load_member(directory / f"{k}-{epoch}.pt") for k in range(len(CONFIGS))]
    assert [len(s["history"]) for s in states] == [epoch] * 3
    assert states[2]["sparsity"] is None
    assert states[1]["sparsity"]["schedule"]["previous_mu"] is not None
    resumed = train_packed(CONFIGS, resume=states)
    for member, unstopped in zip(resumed, members, strict=True):
        assert_same_member(member, unstopped)
    # the adaptive member's sparsity moved after the warm-up: its state at epoch 2 is not its initial one
    assert members[1].history[1]["sparsity_k"] > members[1].history[0]["sparsity_k"]


@pytest.mark.parametrize("composition", [(1,), (2,), (2, 0)], ids=["adaptive-alone", "dense-alone", "dense-and-cubic"])
def test_a_member_resumes_in_any_pack(uninterrupted, composition):
    members, directory = uninterrupted
    resumed = train_packed(
        [CONFIGS[k] for k in composition], resume=[load_member(directory / f"{k}-1.pt") for k in composition]
    )
    for member, k in zip(resumed, composition, strict=True):
        assert_same_member(member, members[k])


def test_a_state_after_the_last_epoch_resumes_finished(uninterrupted):
    members, directory = uninterrupted
    trainer = PackedTrainer(CONFIGS, resume=[load_member(directory / f"{k}-{EPOCHS}.pt") for k in range(len(CONFIGS))])
    for member, unstopped in zip(trainer.members, members, strict=True):
        assert_same_member(member, unstopped)
    with pytest.raises(ValueError, match="member 0 is finished"):
        trainer.member_state(0)


def test_states_of_different_epochs_or_configs_are_refused(uninterrupted):
    _, directory = uninterrupted
    first, second = load_member(directory / "0-1.pt"), load_member(directory / "1-2.pt")
    with pytest.raises(ValueError, match=r"one epoch, got epochs \[1, 2\]"):
        PackedTrainer(CONFIGS[:2], resume=[first, second])
    with pytest.raises(ValueError, match=r"one epoch, got epochs \[1, 0\]"):
        PackedTrainer(CONFIGS[:2], resume=[first, None])
    with pytest.raises(
        ValueError, match=r"resume\[0\] is the state of another config than member 0.s \(differs in .*seed.*\)"
    ):
        PackedTrainer(CONFIGS[1:2], resume=[first])


def test_a_state_goes_on_where_only_the_machine_differs(uninterrupted, tmp_path):
    """A search's trial left running goes on from its checkpoint under the data_dir, download, num_threads and device
    (relevance.device) of the driver that resumes or claims it, which ``--resume`` and ``--join`` accept: it failed
    ('differs in num_threads') once Ray had started, its epochs lost. Other fields are still refused."""
    _, directory = uninterrupted
    state = load_member(directory / "0-1.pt")
    machine = {"data_dir": tmp_path, "download": True, "num_threads": 2, "device": "cpu"}
    (resumed,) = train_packed([CONFIGS[0].model_copy(update=machine)], resume=[state])
    assert resumed.status == "finished"
    assert [h["epoch"] for h in resumed.history] == list(range(1, EPOCHS + 1))
    pruned_on = {device: {**CONFIGS[0].model_dump(), "relevance": {"device": device}} for device in ("cpu", "auto")}
    spec, pruned_elsewhere = (TrialSpec.model_validate(pruned_on[device]) for device in ("cpu", "auto"))
    assert config_differences(pruned_elsewhere, {"config": spec.model_dump(mode="json")}) == []
    assert config_differences(spec.model_copy(update={"lr": 0.2}), {"config": spec.model_dump(mode="json")}) == ["lr"]


def test_a_foreign_file_is_not_a_member_checkpoint(tmp_path):
    path = save_atomic({"format": "tuneprune-model-v1"}, tmp_path / "model.pt")
    with pytest.raises(ConfigError, match="not a tuneprune run checkpoint"):
        load_member(path)


@pytest.mark.parametrize("k", [0, 1, 2], ids=["cubic", "adaptive", "dense"])
def test_one_checkpoint_format_a_member_goes_on_alone_and_a_solo_run_in_a_pack(uninterrupted, tmp_path, k):
    """A pack member's state at epoch 1 resumes as a solo run, and a solo run's checkpoint at epoch 1 as a
    member of a pack of one: both train what the uninterrupted member trained (clipping on: the default recipe)."""
    members, directory = uninterrupted
    alone = train(CONFIGS[k], resume_from=directory / f"{k}-1.pt")
    assert [without_times(h) for h in alone.history] == [without_times(h) for h in members[k].history]
    assert CONFIGS[k].grad_clip is not None

    class Interrupted(Exception):
        pass

    def stop_after_first(metrics: dict[str, float], checkpoint) -> None:
        if metrics["epoch"] == 1:
            raise Interrupted

    with pytest.raises(Interrupted):
        train(CONFIGS[k], checkpoint_dir=tmp_path, callbacks=[stop_after_first])
    (packed,) = train_packed([CONFIGS[k]], resume=[load_member(tmp_path / CHECKPOINT_NAME)])
    assert_same_member(packed, members[k])
