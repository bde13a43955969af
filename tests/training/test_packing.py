"""Packed trials: a member of a pack trains the trial it would train alone (CPU, digits, small CNN).

With the default (``loop``) forward on the CPU each member's convolutions, thresholds (the
same order statistics), masks, gradient clipping (its own norm, summed tensor by tensor in
the order of ``clip_grad_norm_`` alone) and SGD arithmetic are exactly its solo run's, so
every member trains bit for bit the same trial, clipping on or off. The fused (``vmap``)
forward sums the grouped convolution in another order (about 1e-7 per forward), which
sparse training on a tiny model amplifies: that test alone compares to 1e-2 and 3 samples.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from tuneprune.models import create_model
from tuneprune.shared.config import validate
from tuneprune.sparsity import prunable_sparsity
from tuneprune.sparsity.dispatch import accelerator_path
from tuneprune.training import PackedTrainer, RunConfig, TrainingDiverged, check_packable, train, train_packed
from tuneprune.training.hooks import FrozenWeights
from tuneprune.training.trainer import member_losses

BASE = {"model": "small_cnn", "dataset": "digits", "epochs": 2, "batch_size": 64, "num_threads": 1}
GLOBAL_CUBIC = {"seed": 0, "sparsity": {"target": 0.8}}
LAYER_LOG_DENSITY = {
    "seed": 1,
    "lr": 0.05,
    "grad_clip": None,
    "sparsity": {
        "target": 0.6,
        "threshold": "layer",
        "theta": {"policy": "log_density", "alpha": 0.2, "mode": "layer"},
        "drop": {"rho": 0.2, "mode": "layer"},
    },
}
ADAPTIVE_DROP: dict[str, Any] = {
    "seed": 2,
    "grad_clip": 1.0,
    "sparsity": {
        "target": 0.7,
        "scheduler": {"type": "adaptive", "preset": "lambda1"},
        "theta": {"policy": "constant", "value": 0.5},
        "drop": {"rho": 0.1},
    },
}
DENSE = {"seed": 3}
LOSSES = ("train_loss", "val_loss", "test_loss", "theta", "mask_stability", "mean_mask_stability", "lambda")
ACCURACIES = {"train_acc": 1293, "val_acc": 144, "test_acc": 360}  # digits split sizes
SPARSITIES = ("sparsity", "sparsity_k", "eliminated", "lr", "epoch")


def config(overrides: dict, **more) -> RunConfig:
    return validate(RunConfig, {**BASE, **overrides, **more})


@functools.cache
def _solo_history(config_json: str) -> tuple:
    result = train(validate(RunConfig, json.loads(config_json)))
    return tuple(result.history), prunable_sparsity(result.model)


def solo(run_config: RunConfig) -> tuple:
    """History and final sparsity of the trial trained alone (cached across tests)."""
    return _solo_history(run_config.model_dump_json())


def without_times(metrics: dict) -> dict:
    return {key: value for key, value in metrics.items() if not key.endswith("_time")}


def assert_close_history(packed: list[dict], alone: list[dict], rel: float, samples: int) -> None:
    assert len(packed) == len(alone)
    for p, a in zip(packed, alone, strict=True):
        assert p.keys() == a.keys()
        for key in LOSSES:
            if key in a:
                assert p[key] == pytest.approx(a[key], rel=rel, abs=1e-7), key
        for key, n in ACCURACIES.items():
            assert abs(p[key] - a[key]) <= samples / n + 1e-12, key
        for key in SPARSITIES:
            if key in a:
                assert p[key] == pytest.approx(a[key], abs=1e-6), key


def assert_same_history(packed: list[dict], alone: list[dict]) -> None:
    """Every metric but the times equal, bit for bit."""
    assert [without_times(h) for h in packed] == [without_times(h) for h in alone]


def test_members_train_the_trials_they_would_train_alone():
    configs = [config(GLOBAL_CUBIC), config(LAYER_LOG_DENSITY), config(ADAPTIVE_DROP)]
    members = train_packed(configs)
    for member, run_config in zip(members, configs, strict=True):
        history, final_sparsity = solo(run_config)
        assert member.status == "finished"
        assert member.error is None
        assert_same_history(member.history, list(history))
        assert member.result is not None
        assert prunable_sparsity(member.result.model) == final_sparsity
        assert member.result.config == run_config
    assert [c.grad_clip for c in configs] == [3.0, None, 1.0]  # the default recipe clips; one member does not
    # the members differ: a pack is not K copies of one trial
    assert len({round(m.history[-1]["sparsity"], 3) for m in members}) == 3


def test_dense_members_train_bit_for_bit_as_alone():
    configs = [config(DENSE, epochs=1), config(DENSE, epochs=1, seed=4, lr=0.05, weight_decay=1e-3)]
    members = train_packed(configs)
    for member, run_config in zip(members, configs, strict=True):
        history, _ = solo(run_config)
        assert_same_history(member.history, list(history))
        assert "sparsity" not in member.history[0]


def test_a_dense_member_beside_sparse_ones_clips_bit_for_bit_as_alone():
    """formulas §10.7: a member's gradient norm is summed in the order ``clip_grad_norm_`` meets its parameters alone;
    alone, a dense member's weights are not parametrized (each weight in its own place, before its bias), a sparse
    member's are (after its bias). A dense member packed with a sparse one, its clipping active, trains its solo trial."""
    configs = [config(GLOBAL_CUBIC, epochs=1), config(DENSE, epochs=1, grad_clip=0.05)]
    members = train_packed(configs)
    for member, run_config in zip(members, configs, strict=True):
        assert_same_history(member.history, list(solo(run_config)[0]))


def test_bf16_members_train_bit_for_bit_as_alone():
    """``precision: bf16`` runs the pack's forward and losses under the same autocast as the solo loop."""
    configs = [
        config(LAYER_LOG_DENSITY, epochs=1, precision="bf16"),
        config(DENSE, epochs=1, grad_clip=None, precision="bf16"),
    ]
    members = train_packed(configs)
    for member, run_config in zip(members, configs, strict=True):
        assert_same_history(member.history, list(solo(run_config)[0]))
    assert members[1].history[0]["train_loss"] != solo(config(DENSE, epochs=1, grad_clip=None))[0][0]["train_loss"]


def test_augmented_members_of_one_channel_train_bit_for_bit_as_alone():
    """Crop + flip (formulas §1.6) of one-channel images give each member the batches, and so the convolution
    kernels, it has alone: an augmented digits member trains its solo trial in a pack."""
    configs = [config(GLOBAL_CUBIC, epochs=1, augment=True), config(DENSE, epochs=1, augment=True)]
    members = train_packed(configs)
    for member, run_config in zip(members, configs, strict=True):
        assert_same_history(member.history, list(solo(run_config)[0]))


def test_members_with_and_without_nesterov_train_bit_for_bit_as_alone():
    """``nesterov`` is each member's own (d + momentum * b against b, formulas §1.6), as alone."""
    configs = [
        config(GLOBAL_CUBIC, epochs=1, nesterov=True),
        config(ADAPTIVE_DROP, epochs=1),
        config(DENSE, epochs=1, nesterov=True),
    ]
    check_packable(configs)
    members = train_packed(configs)
    for member, run_config in zip(members, configs, strict=True):
        assert_same_history(member.history, list(solo(run_config)[0]))
    plain = solo(config(GLOBAL_CUBIC, epochs=1))[0][0]
    assert members[0].history[0]["train_loss"] != plain["train_loss"]  # Nesterov changed the trial


def test_channels_last_members_train_bit_for_bit_as_alone():
    """``channels_last``: each member's weights are channels_last views of the stacked rows and its batches
    channels_last, so it runs the kernels it runs alone."""
    configs = [config(GLOBAL_CUBIC, epochs=1, channels_last=True), config(DENSE, epochs=1, channels_last=True)]
    trainer = PackedTrainer(configs)
    alone = dict(trainer.models[0].named_parameters())
    for name, stacked in trainer.stack.member_params(trainer.stack.weights).items():
        assert stacked[0].stride() == alone[name].stride(), name  # channels_last, as alone
    assert alone["features.3.weight"].is_contiguous(memory_format=torch.channels_last)
    members = trainer.run()
    for member, run_config in zip(members, configs, strict=True):
        assert_same_history(member.history, list(solo(run_config)[0]))
        assert member.result is not None


def user_model(seed: int) -> torch.nn.Module:
    """A network of the user's own (seeded), not in the registry: its prunable row (144 + 2,560 weights) and
    its other parameters (58) end in a partial SIMD vector, alone and in a pack."""
    torch.manual_seed(seed)
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(256, 10)
    )


def frozen_model(seed: int) -> tuple[torch.nn.Module, FrozenWeights]:
    """A user's model with a third of each kernel's entries zeroed, and the hook that keeps them zero with its
    BatchNorm frozen in eval mode (as the pruning fine-tunings use it)."""
    model = user_model(seed)
    generator = torch.Generator().manual_seed(seed)
    frozen = []
    for conv in (m for m in model.modules() if isinstance(m, torch.nn.Conv2d)):
        mask = torch.rand(conv.weight.shape, generator=generator) < 1 / 3
        with torch.no_grad():
            conv.weight[mask] = 0.0
        frozen.append((conv.weight, mask))
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    return model, FrozenWeights(frozen, norms)


def test_members_with_their_own_models_and_hooks_train_bit_for_bit_as_alone():
    """``models=`` and ``hooks=``: each member's hook runs on its own model, whose modules' modes the forward
    keeps and whose parameters' ``.grad`` are the member's gradients, as in ``train(..., hooks=...)`` alone."""
    configs = [config(DENSE, epochs=1), config(GLOBAL_CUBIC, epochs=1)]
    alone = []
    for run_config in configs:
        model, hook = frozen_model(run_config.seed)
        alone.append(train(run_config, model=model, hooks=[hook]))
    pairs = [frozen_model(c.seed) for c in configs]
    initial = [model.state_dict()["1.running_mean"].clone() for model, _ in pairs]
    with pytest.raises(ValueError, match="hooks need 'loop'"):
        PackedTrainer(configs, "vmap", models=[m for m, _ in pairs], hooks=[[h] for _, h in pairs])
    trainer = PackedTrainer(configs, models=[m for m, _ in pairs], hooks=[[h] for _, h in pairs])
    members = trainer.run()
    for member, solo_run, (model, hook), mean in zip(members, alone, pairs, initial, strict=True):
        assert_same_history(member.history, solo_run.history)
        assert member.result is not None
        assert member.result.model is model  # trained in place
        single = solo_run.model.state_dict()
        for name, packed in model.state_dict().items():
            assert torch.equal(packed, single[name]), name
        for weight, mask in hook.frozen:
            assert weight[mask.expand_as(weight)].abs().sum() == 0  # the frozen entries stayed zero
        assert torch.equal(model.state_dict()["1.running_mean"], mean)  # BatchNorm stayed in eval mode
    unhooked = train(configs[0], model=user_model(configs[0].seed)).history
    assert unhooked[0]["train_loss"] != members[0].history[0]["train_loss"]  # the hook changed the trial


def test_fused_forward_matches_alone_to_reduction_order():
    configs = [config(GLOBAL_CUBIC, epochs=1), config(ADAPTIVE_DROP, epochs=1)]
    members = train_packed(configs, forward_mode="vmap")
    for member, run_config in zip(members, configs, strict=True):
        assert_close_history(member.history, list(solo(run_config)[0]), rel=1e-2, samples=3)


def test_a_diverging_member_fails_alone():
    diverging = config(GLOBAL_CUBIC, lr=1e38, grad_clip=None, seed=5)
    with pytest.raises(TrainingDiverged) as alone:
        train(diverging)
    configs = [config(DENSE), diverging, config(ADAPTIVE_DROP)]
    members = train_packed(configs)
    assert [m.status for m in members] == ["finished", "failed", "finished"]
    assert members[1].error == str(alone.value)
    assert members[1].result is None
    assert members[1].history == []
    for k in (0, 2):
        assert_same_history(members[k].history, list(solo(configs[k])[0]))


def test_a_stopped_member_keeps_its_epochs_and_the_others_go_on_as_alone():
    configs = [config(GLOBAL_CUBIC), config(LAYER_LOG_DENSITY), config(ADAPTIVE_DROP)]
    trainer = PackedTrainer(configs)
    first = trainer.train_epoch()
    assert sorted(first) == [0, 1, 2]
    trainer.stop(1)
    second = trainer.train_epoch()
    assert sorted(second) == [0, 2]
    members = trainer.members
    assert [m.status for m in members] == ["finished", "stopped", "finished"]
    assert len(members[1].history) == 1
    assert members[1].result is not None
    assert_same_history(members[1].history, list(solo(configs[1])[0])[:1])
    for k in (0, 2):
        assert_same_history(members[k].history, list(solo(configs[k])[0]))


def test_an_accelerator_reduces_every_members_loss_at_once_as_each_alone():
    """member_losses: one batched cross-entropy on the accelerator path, the members' own losses (and gradients)
    to rounding; on the CPU each member's loss is the one of a run alone, bit for bit."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 16, 10, generator=g, requires_grad=True)
    y = torch.randint(0, 10, (3, 16), generator=g)
    alone = torch.stack([F.cross_entropy(logits[k], y[k]) for k in range(3)])
    (alone_grad,) = torch.autograd.grad(alone.sum(), logits)
    assert torch.equal(member_losses(logits, y), alone)
    with accelerator_path():
        batched = member_losses(logits, y)
    (batched_grad,) = torch.autograd.grad(batched.sum(), logits)
    torch.testing.assert_close(batched, alone, rtol=1e-6, atol=0)
    torch.testing.assert_close(batched_grad, alone_grad, rtol=1e-6, atol=1e-9)


def _shares_memory(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


def test_a_pack_holds_each_members_weights_once_and_its_models_show_them():
    """The members' models hold views of the stacked rows (no second copy on the device); a dropped member's model
    gets tensors of its own, and the others follow the new stacked rows."""
    configs = [config(GLOBAL_CUBIC), config(LAYER_LOG_DENSITY), config(ADAPTIVE_DROP)]
    trainer = PackedTrainer(configs)
    stacked = [trainer.stack.weights, *trainer.stack.leaves[1:], *trainer.stack.buffers.values()]

    def bound(model: torch.nn.Module, tensors: list[torch.Tensor]) -> bool:
        return all(any(_shares_memory(t, s) for s in tensors) for t in [*model.parameters(), *model.buffers()])

    assert all(bound(model, stacked) for model in trainer.models)
    trainer.train_epoch()
    weights = trainer.stack.named_leaves(trainer.stack.leaves)
    for k, model in enumerate(trainer.models):  # the raw weights w after the epoch, member k's rows
        for name, p in model.named_parameters():
            assert torch.equal(p, weights[name][k]), name
    stopped = trainer.models[1]
    trainer.stop(1)
    stacked = [*trainer.stack.leaves, *trainer.stack.buffers.values()]
    assert not any(_shares_memory(t, s) for t in stopped.parameters() for s in stacked)
    assert bound(trainer.models[0], stacked)
    assert bound(trainer.models[2], stacked)
    result = trainer.members[1].result
    assert result is not None
    assert result.model is stopped  # its P_T(w), in tensors of its own
    assert prunable_sparsity(stopped) == pytest.approx(result.final["sparsity"], abs=1e-6)


def test_trials_that_cannot_share_a_pack_are_refused():
    with pytest.raises(ValueError, match="batch_size: member 1 has 32, member 0 64"):
        check_packable([config(GLOBAL_CUBIC), config(DENSE, batch_size=32)])
    with pytest.raises(ValueError, match=r"sparsity.operator_p"):
        check_packable([config(GLOBAL_CUBIC), config({"sparsity": {"target": 0.5, "operator_p": 1.0}})])
    with pytest.raises(ValueError, match="precision: member 1 has 'bf16'"):
        check_packable([config(GLOBAL_CUBIC), config(DENSE, precision="bf16")])
    with pytest.raises(ValueError, match="channels_last: member 1 has True"):
        check_packable([config(GLOBAL_CUBIC), config(DENSE, channels_last=True)])


def test_stopping_a_member_that_left_the_pack_names_its_status():
    """``stop(k)`` of a member no longer running says which member and why, as ``member_state(k)`` does."""
    trainer = PackedTrainer([config(GLOBAL_CUBIC), config(DENSE)])
    trainer.stop(0)
    with pytest.raises(ValueError, match=r"member 0 is stopped"):
        trainer.stop(0)
    with pytest.raises(ValueError, match=r"member 0 is stopped"):
        trainer.member_state(0)


def test_models_of_another_architecture_are_refused():
    """``models=`` share one architecture: a deeper ResNet of the same class was trained as the first member's."""
    configs = [config(GLOBAL_CUBIC, model="resnet20", image_size=8), config(DENSE, model="resnet20", image_size=8)]
    models = [create_model("resnet20", 10, 1), create_model("resnet32", 10, 1)]
    with pytest.raises(ValueError, match=r"models\[1\] differs from models\[0\]"):
        PackedTrainer(configs, models=models)


def test_members_data_of_other_sizes_is_refused():
    """``data=`` of other sizes: the loaders zipped per step dropped a longer member's last batches, or stopped the
    epoch with ``StopIteration``."""
    from dataclasses import replace

    from tuneprune.data import load_dataset

    configs = [config(GLOBAL_CUBIC), config(DENSE)]
    splits = load_dataset(configs[0])
    shorter = replace(splits, x_train=splits.x_train[:1000], y_train=splits.y_train[:1000])
    with pytest.raises(ValueError, match=r"data: .* of one size, got \[\(1000, 144, 360\), \(1293, 144, 360\)\]"):
        PackedTrainer(configs, data=[splits, shorter])


def test_a_last_batch_of_one_is_checked_once_for_members_of_one_architecture(monkeypatch):
    """1293 digits training images in batches of 68 leave a last batch of one: the one-image forward that checks the
    model trains on it ran for each of K registry members (K copies and forwards of one architecture), now once;
    members given their own ``models`` are each checked."""
    import tuneprune.training.trainer

    checks = []
    check_last_batch = tuneprune.training.trainer.check_last_batch

    def counted(*args):
        checks.append(args)
        return check_last_batch(*args)

    monkeypatch.setattr(tuneprune.training.trainer, "check_last_batch", counted)
    configs = [config({"seed": seed}, batch_size=68) for seed in range(3)]
    PackedTrainer(configs)
    assert len(checks) == 1
    PackedTrainer(configs, models=[create_model("small_cnn", 10, 1) for _ in configs])
    assert len(checks) == 1 + 3
