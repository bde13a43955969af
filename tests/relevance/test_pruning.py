"""Channel selection and pruning of formulas §6: exact counts, no empty layer, restore, fixed-mask fine-tuning."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from tuneprune.data import load_dataset
from tuneprune.models import create_model
from tuneprune.relevance import PruningPoint, evaluate_channel_pruning
from tuneprune.relevance.channels import channels_pruned, conv_units, layer_floor, prune_channels, select_channels
from tuneprune.relevance.config import FinetuneSettings, RelevanceStudyConfig
from tuneprune.relevance.evaluation import evaluate_pruned, prepare
from tuneprune.relevance.normalization import normalize_scores
from tuneprune.relevance.rankings import random_order
from tuneprune.relevance.settings import Normalization, RelevanceSettings, Scope
from tuneprune.relevance.study import finetune_pruned, run_study
from tuneprune.shared.config import load_config
from tuneprune.training import RunConfig, evaluate, train

SMALL_CNN_WIDTHS = [32, 64, 128]


@pytest.fixture(scope="module")
def trained():
    """small_cnn trained one epoch on digits, its data and config."""
    config = RunConfig(model="small_cnn", dataset="digits", epochs=1, batch_size=64, lr=0.05)
    return train(config).model, load_dataset(config), config


def zeroed_channels(model: nn.Module) -> int:
    """Channels whose filter and BatchNorm scale and shift are all zero."""
    count = 0
    for unit in conv_units(model):
        assert unit.norm is not None
        dead = unit.conv.weight.flatten(1).eq(0).all(1) & unit.norm.weight.eq(0) & unit.norm.bias.eq(0)
        count += int(dead.sum())
    return count


def test_conv_units_pair_each_convolution_with_its_batchnorm():
    units = conv_units(create_model("resnet20", 10, 3))
    assert len(units) == 19 + 2  # stem, 18 body convolutions, 2 projection shortcuts
    assert all(u.norm is not None and u.norm.num_features == u.size for u in units)
    assert [u.offset for u in units[:3]] == [0, 16, 32]


def prune_at(percentage: int, scope: Scope) -> tuple[nn.Module, list, list[int]]:
    """A fresh small_cnn with ``percentage`` % of its 224 channels pruned in a random order."""
    model = create_model("small_cnn", 10, 1)
    units = conv_units(model)
    channels = select_channels(random_order(224, percentage), units, percentage, scope)
    prune_channels(units, channels)
    return model, units, channels


@pytest.mark.parametrize("percentage", [10, 33, 50, 90])
def test_global_pruning_removes_exactly_the_requested_number(percentage):
    model, _, channels = prune_at(percentage, "global")
    assert len(channels) == len(set(channels)) == round(percentage / 100 * 224) == zeroed_channels(model)


@pytest.mark.parametrize("percentage", [10, 50, 90])
def test_layer_pruning_takes_the_percentage_of_every_layer(percentage):
    model, units, channels = prune_at(percentage, "layer")
    per_layer = [sum(u.offset <= c < u.offset + u.size for c in channels) for u in units]
    assert per_layer == [round(percentage / 100 * w) for w in SMALL_CNN_WIDTHS]
    assert zeroed_channels(model) == sum(per_layer)


def test_no_layer_loses_its_last_channel():
    units = conv_units(create_model("small_cnn", 10, 1))
    first_layer_first = list(range(32)) + list(range(32, 224))
    channels = select_channels(first_layer_first, units, 99, "global")
    assert len(channels) == 224 - 3  # round(0.99 * 224) = 222 is capped at one survivor per layer
    assert sum(c < 32 for c in channels) == 31
    assert len(select_channels(first_layer_first, units, 99, "layer")) == 31 + 63 + 127


def test_pruned_channels_output_zero_and_are_restored():
    model = create_model("small_cnn", 10, 1).eval()
    units = conv_units(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(4, 1, 8, 8)
    features = model.get_submodule("features")
    assert isinstance(features, nn.Sequential)
    with channels_pruned(units, [0, 5]):
        activations = features[:3](x)
        assert activations[:, [0, 5]].abs().max() == 0
        assert activations[:, 1].abs().max() > 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_pruning_zero_percent_leaves_accuracy_unchanged(trained):
    model, data, _ = trained
    baseline = evaluate(model, data.x_test, data.y_test)
    prepared = prepare(model, data, RelevanceSettings(eval_samples=64))
    scopes: tuple[Scope, ...] = ("global", "layer")
    for scope in scopes:
        assert select_channels(random_order(224, 0), prepared.units, 0, scope) == []
    assert evaluate_pruned(prepared, []) == baseline
    metrics = evaluate_channel_pruning(model, data, PruningPoint(percentage=0, eval_samples=64))
    assert (metrics["pruned_acc"], metrics["pruned_loss"], metrics["pruned_fraction"]) == (*baseline, 0.0)


def test_evaluate_channel_pruning_reports_the_search_metrics(trained):
    model, data, _ = trained
    metrics = evaluate_channel_pruning(
        model, data, PruningPoint(ranking="mixed", delta=0.3, percentage=50, eval_samples=64)
    )
    assert set(metrics) == {"pruned_acc", "pruned_loss", "pruned_fraction"}
    assert metrics["pruned_fraction"] == 112 / 224
    assert 0.0 <= metrics["pruned_acc"] <= 1.0


def test_finetuning_keeps_the_mask_and_leaves_the_original(trained):
    model, data, config = trained
    before = {k: v.clone() for k, v in model.state_dict().items()}
    channels = select_channels(random_order(224, 2), conv_units(model), 40, "global")
    tuned = finetune_pruned(model, channels, data, config, FinetuneSettings(epochs=1, lr=0.01))
    assert zeroed_channels(tuned) == len(channels)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_study_rows_carry_finetuned_metrics_when_asked(trained):
    model, data, config = trained
    study = RelevanceStudyConfig(
        train=config,
        relevance={"eval_samples": 32},
        rankings=["parameter"],
        deltas=[0.5],
        percentages=[30],
        finetune={"epochs": 1},
    )
    result = run_study(model, config, data, study)
    assert list(result.curves) == ["parameter", "delta=0.5"]
    assert result.num_channels == 224
    (row,) = result.curves["parameter"]
    assert row["pruned_channels"] == 67
    assert {"acc", "loss", "finetuned_acc", "finetuned_loss"} <= set(row)


def test_normalisations_scale_each_layer_and_keep_its_order():
    units = conv_units(create_model("small_cnn", 10, 1))
    scores = torch.rand(224, generator=torch.Generator().manual_seed(0)) * torch.tensor(
        [1.0] * 32 + [0.01] * 64 + [5.0] * 128
    )
    assert torch.equal(normalize_scores(scores, units, "none"), scores)
    normalizations: tuple[tuple[Normalization, Callable[..., torch.Tensor]], ...] = (
        ("layer_share", torch.mean),
        ("layer_max", torch.amax),
    )
    for normalization, reduce in normalizations:
        normalized = normalize_scores(scores, units, normalization)
        for unit in units:
            mine = slice(unit.offset, unit.offset + unit.size)
            assert reduce(normalized[mine]).item() == pytest.approx(1.0)
            assert torch.equal(torch.argsort(normalized[mine]), torch.argsort(scores[mine]))


@pytest.mark.parametrize(("share", "floors"), [(0.0, [1, 1, 1]), (0.1, [4, 7, 13]), (0.5, [16, 32, 64])])
def test_global_scope_keeps_the_minimum_share_of_every_layer(share, floors):
    units = conv_units(create_model("small_cnn", 10, 1))
    last_layer_first = list(range(96, 224)) + list(range(96))
    channels = select_channels(last_layer_first, units, 90, "global", share)
    kept = [u.size - sum(u.offset <= c < u.offset + u.size for c in channels) for u in units]
    assert [layer_floor(u.size, share) for u in units] == floors
    assert all(k >= f for k, f in zip(kept, floors, strict=True))
    assert len(channels) == min(round(0.9 * 224), 224 - sum(floors))
    assert kept[2] == floors[2]  # the ranking's first layer is pruned down to its floor, then the next


def test_shipped_relevance_example_beats_random_at_10_to_30_percent_with_the_defaults():
    """configs/relevance_digits.yaml as shipped (6 epochs on digits, a few seconds): formulas §6's control."""
    shipped = Path(__file__).parents[2] / "configs" / "relevance_digits.yaml"
    study = load_config(RelevanceStudyConfig, shipped, ["deltas=[]", "percentages=[10,20,30]"])
    data = load_dataset(study.train)
    result = run_study(train(study.train).model, study.train, data, study)
    accuracy = {name: [row["acc"] for row in curve] for name, curve in result.curves.items()}
    for ranking in ("relevance", "parameter"):
        assert all(a > r for a, r in zip(accuracy[ranking], accuracy["random"], strict=True)), (ranking, accuracy)
