"""Elimination of the smallest pruned weights, drop percentages (formulas §4)."""

import pytest
import torch

from tuneprune.sparsity.config import DropConfig
from tuneprune.sparsity.drop import Elimination
from tuneprune.sparsity.flat import FlatLayout
from tuneprune.sparsity.masks import MaskBuilder, Masks, MemberRule
from tuneprune.sparsity.theta import ConstantTheta


def _weights():
    g = torch.Generator().manual_seed(0)
    return [
        torch.randn(16, 8, 3, 3, generator=g),
        3 * torch.randn(40, 16, generator=g),
        0.5 * torch.randn(10, 40, generator=g),
    ]


def _builder(weights, threshold_mode, drop: DropConfig) -> tuple[MaskBuilder, torch.Tensor]:
    """A MaskBuilder of one member over ``weights`` and their flat buffer."""
    flat = torch.cat([w.flatten() for w in weights])
    rule = MemberRule(threshold_mode, ConstantTheta(1.0), Elimination.from_config(drop, 0.9))
    return MaskBuilder([w.numel() for w in weights], [rule], flat.device), flat


def _layers(weights, flags: torch.Tensor | None) -> list[torch.Tensor]:
    """The one member's ``[1, N]`` flags as per-layer views in the weights' shapes."""
    assert flags is not None
    return FlatLayout.of(weights).shaped(flags[0])


def _eliminated_total(masks: Masks) -> int:
    assert masks.eliminated_counts is not None
    return int(masks.eliminated_counts.sum())


def test_timeframes():
    from_start = Elimination.from_config(DropConfig(rho=0.5), final_sparsity=0.9)
    after = Elimination.from_config(DropConfig(rho=0.5, timeframe="after_target"), final_sparsity=0.9)
    assert from_start.applies(0.3)
    assert not after.applies(0.3)
    assert from_start.applies(0.9)
    assert after.applies(0.9)
    assert not Elimination.from_config(DropConfig(rho=0.0), 0.9).applies(0.9)
    assert not from_start.applies(0.0)


def test_global_elimination_is_the_rho_s_quantile_of_the_network():
    weights = _weights()
    builder, flat = _builder(weights, "global", DropConfig(rho=0.25))
    masks = builder.build(flat, [0.8], slot=0)
    magnitudes = torch.cat([w.flatten().abs() for w in weights])
    t = torch.quantile(magnitudes, 0.25 * 0.8)
    for w, gone in zip(weights, _layers(weights, masks.eliminated), strict=True):
        assert torch.equal(gone, w.abs() < t)
    assert abs(_eliminated_total(masks) - 0.2 * magnitudes.numel()) <= 1


def test_layer_elimination_uses_each_layers_achieved_sparsity():
    weights = _weights()
    builder, flat = _builder(weights, "global", DropConfig(rho=0.5, mode="layer"))
    masks = builder.build(flat, [0.7], slot=0)
    T = torch.quantile(torch.cat([w.flatten().abs() for w in weights]), 0.7)
    layers = zip(weights, _layers(weights, masks.kept), _layers(weights, masks.eliminated), strict=True)
    for w, kept, gone in layers:
        layer_sparsity = (w.abs() <= T).float().mean().item()
        t_l = torch.quantile(w.flatten().abs(), 0.5 * layer_sparsity)
        assert torch.equal(kept, w.abs() > T)
        assert torch.equal(gone, w.abs() < t_l)
        assert not (gone & kept).any()


def test_no_elimination_before_target_with_after_target():
    weights = _weights()
    builder, flat = _builder(weights, "global", DropConfig(rho=0.5, timeframe="after_target"))
    assert builder.build(flat, [0.5], slot=0).eliminated is None
    assert builder.build(flat, [0.9], slot=1).eliminated is not None


def test_layer_thresholds_with_global_elimination_are_refused():
    """formulas §4 defines the global t only under the global T: a network-wide t against T_l could freeze kept weights."""
    with pytest.raises(ValueError, match="layer thresholds need layer elimination"):
        _builder(_weights(), "layer", DropConfig(rho=0.5, mode="global"))
    builder, flat = _builder(_weights(), "layer", DropConfig(rho=0.5, mode="layer"))
    masks = builder.build(flat, [0.8], slot=0)
    assert masks.eliminated is not None
    assert _eliminated_total(masks) > 0
    assert not (masks.kept & masks.eliminated).any()
