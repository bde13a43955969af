"""Mask stability: Jaccard index of kept sets, mean over layers (formulas §3)."""

import torch

from tuneprune.sparsity import jaccard
from tuneprune.sparsity.config import DropConfig
from tuneprune.sparsity.drop import Elimination
from tuneprune.sparsity.masks import MaskBuilder, MemberRule
from tuneprune.sparsity.theta import ConstantTheta


def test_jaccard_of_kept_entries():
    a = torch.tensor([1, 1, 0, 0, 1], dtype=torch.bool)
    b = torch.tensor([1, 0, 1, 0, 1], dtype=torch.bool)
    assert jaccard(a, b) == 2 / 4
    assert jaccard(a, a) == 1.0
    assert jaccard(a, ~a) == 0.0
    assert jaccard(torch.zeros(4, dtype=torch.bool), torch.zeros(4, dtype=torch.bool)) == 1.0


def test_jaccard_on_random_masks():
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(3, 50, generator=g) > 0.4, torch.rand(3, 50, generator=g) > 0.7
    expected = len(set(a.flatten().nonzero().flatten().tolist()) & set(b.flatten().nonzero().flatten().tolist())) / len(
        set(a.flatten().nonzero().flatten().tolist()) | set(b.flatten().nonzero().flatten().tolist())
    )
    assert abs(jaccard(a, b) - expected) < 1e-7


def test_mean_stability_over_layers_between_two_iterations():
    g = torch.Generator().manual_seed(1)
    weights = [torch.randn(8, 4, 3, 3, generator=g), torch.randn(10, 8, generator=g)]
    rule = MemberRule("layer", ConstantTheta(1.0), Elimination.from_config(DropConfig(), 0.9))
    builder = MaskBuilder([w.numel() for w in weights], [rule], torch.device("cpu"))
    before = builder.build(torch.cat([w.flatten() for w in weights]), [0.5], slot=0)
    moved = [w + 0.3 * torch.randn(w.shape, generator=g) for w in weights]
    after = builder.build(torch.cat([w.flatten() for w in moved]), [0.6], slot=1)
    expected = (
        sum(
            jaccard(w.abs() > w.abs().quantile(0.5), m.abs() > m.abs().quantile(0.6))
            for w, m in zip(weights, moved, strict=True)
        )
        / 2
    )
    assert abs(builder.stability(after, before).item() - expected) < 1e-6
    assert builder.stability(before, before).item() == 1.0
