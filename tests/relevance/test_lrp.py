"""LRP of formulas §6 with zennit: relevance conservation on VGG-style and residual BatchNorm models."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from tuneprune.models.resnet import cifar_resnet
from tuneprune.relevance import lrp
from tuneprune.relevance.channels import conv_units
from tuneprune.relevance.lrp import ConvBatchNormMerge, explain_batches, mean_channel_relevance, running_mean
from tuneprune.relevance.settings import RelevanceSettings


def bias_free(model: nn.Module) -> nn.Module:
    """Random BatchNorm scales and variances, zero shifts and means, zero linear bias: no relevance sink."""
    torch.manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.weight.data.uniform_(0.5, 1.5)
            assert module.running_var is not None  # BatchNorm2d tracks its running statistics
            assert module.running_mean is not None
            module.running_var.uniform_(0.5, 2.0)
            module.running_mean.zero_()
            module.bias.data.zero_()
        elif isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.data.zero_()
    return model.eval()


def small_vgg() -> nn.Module:
    return bias_free(
        nn.Sequential(
            nn.Conv2d(1, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(6, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4),
        )
    )  # fmt: skip


def small_resnet() -> nn.Module:
    """ResNet-8: identity shortcut in stage 1, conv + BN projections in stages 2 and 3."""
    return bias_free(cifar_resnet(num_classes=4, in_channels=1, depth=8))


def explain(model: nn.Module, rule: str, x: torch.Tensor) -> lrp.Explanation:
    (explanation,) = explain_batches(model, conv_units(model), [x], RelevanceSettings(rule=rule, epsilon=1e-9))
    return explanation


def total(relevance: torch.Tensor) -> torch.Tensor:
    return relevance.flatten(1).sum(1)


@pytest.mark.parametrize("build", [small_vgg, small_resnet], ids=["vgg", "resnet"])
@pytest.mark.parametrize("rule", ["epsilon", "gamma"])
def test_relevance_is_conserved_from_the_score_to_the_input(build, rule):
    explanation = explain(build(), rule, torch.randn(5, 1, 8, 8))
    assert torch.allclose(total(explanation.input), explanation.score, rtol=1e-3, atol=1e-6)
    # The first convolution's output carries the whole relevance too.
    assert torch.allclose(total(explanation.channels[0]), explanation.score, rtol=1e-3, atol=1e-6)


def test_alpha2beta1_conserves_relevance_at_the_first_convolution():
    """alpha - beta = 1 conserves relevance where every neuron has positive and negative
    contributions (true in this dense VGG-style model, not in general: a 1x1 projection
    seeing few active inputs gives a neuron only one sign and alpha or -beta times its relevance)."""
    explanation = explain(small_vgg(), "alpha2beta1", torch.randn(5, 1, 8, 8))
    assert torch.allclose(total(explanation.channels[0]), explanation.score, rtol=1e-3, atol=1e-6)


def test_without_the_residual_canonizer_relevance_is_not_conserved(monkeypatch):
    build = lrp.build_composite

    def merge_only(settings):
        composite = build(settings)
        composite.canonizers = [ConvBatchNormMerge()]
        return composite

    monkeypatch.setattr(lrp, "build_composite", merge_only)
    explanation = explain(small_resnet(), "epsilon", torch.randn(5, 1, 8, 8))
    assert not torch.allclose(total(explanation.input), explanation.score, rtol=1e-2)


def test_explaining_leaves_the_model_unchanged():
    model = small_resnet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    explain(model, "alpha2beta1", torch.randn(3, 1, 8, 8))
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(not hasattr(m, "canonizer_sum") for m in model.modules())


def test_one_relevance_map_per_convolution_averaged_over_batches():
    model = small_vgg()
    units = conv_units(model)
    x = torch.randn(7, 1, 8, 8)
    settings = RelevanceSettings(rule="epsilon", batch_size=3)
    maps = mean_channel_relevance(model, units, x, settings)
    assert [tuple(m.shape) for m in maps] == [(6, 8, 8), (8, 4, 4)]
    whole = explain(model, "epsilon", x).channels
    assert all(torch.allclose(m, w.mean(0), atol=1e-6) for m, w in zip(maps, whole, strict=True))


def test_running_mean_weights_batches_by_their_size():
    means = running_mean([[torch.tensor([[1.0], [2.0], [3.0]])], [torch.tensor([[10.0]])]])
    assert means[0].tolist() == [4.0]  # (1 + 2 + 3 + 10) / 4, where the mean of the batch means is 6
