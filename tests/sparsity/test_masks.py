"""Masks of K members: one selection over the [K, N] matrix gives each member the T, t, masks and m it gets alone (formulas §1.3, §1.4, §4).

Members differ in sparsity, threshold mode, theta policy and elimination; a dense member
(rule None) is left as it is. Every check runs on the CPU path (NumPy partitions) and on
the accelerator path (the sorted selection, run on CPU tensors).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable
from typing import Any, Literal

import pytest
import torch

from tuneprune.sparsity.dispatch import accelerator_path
from tuneprune.sparsity.drop import Elimination
from tuneprune.sparsity.masks import MaskBuilder, Masks, MemberRule
from tuneprune.sparsity.theta import ConstantTheta, FeatherTheta, LogDensityTheta, ThetaPolicy
from tuneprune.sparsity.thresholds import magnitude_quantiles

PATHS: dict[str, Callable[[], contextlib.AbstractContextManager[Any]]] = {
    "cpu": contextlib.nullcontext,
    "accelerator": accelerator_path,
}
DROP_MODES: list[Literal["global", "layer"]] = ["global", "layer"]
TIMEFRAMES: list[Literal["from_start", "after_target"]] = ["from_start", "after_target"]
SPARSITIES = [0.0, 0.3, 0.5, 0.999, 1.0]


def _row(rng: random.Random, n: int, g: torch.Generator) -> torch.Tensor:
    """A member's weights: random, heavily tied, all equal or all zero."""
    kind = rng.choice(["random", "random", "ties", "equal", "zeros"])
    if kind == "random":
        return torch.randn(n, generator=g) * 10 ** rng.uniform(-3, 1)
    if kind == "ties":
        return (torch.randint(-3, 4, (n,), generator=g) * 0.125).float()
    return torch.full((n,), 0.0 if kind == "zeros" else -0.3)


def _rule(rng: random.Random, sparsity: float) -> MemberRule | None:
    """A random member rule (None: dense); layer thresholds never with global elimination (formulas §10.2)."""
    mode = rng.choice([None, "global", "layer"])
    if mode is None:
        return None
    thetas: list[ThetaPolicy] = [
        ConstantTheta(0.5),
        FeatherTheta(0.97),
        LogDensityTheta(0.2, mode="layer"),
        LogDensityTheta(0.3),
    ]
    theta = rng.choice(thetas)
    drop_mode = "layer" if mode == "layer" else rng.choice(DROP_MODES)
    final = rng.choice([sparsity, 0.95])
    elimination = Elimination(rng.choice([0.0, 0.3]), final, drop_mode, rng.choice(TIMEFRAMES))
    return MemberRule(mode, theta, elimination)


def _pack(seed: int):
    """Random K, layer sizes, weights, sparsities and rules."""
    rng, g = random.Random(seed), torch.Generator().manual_seed(seed)
    k = rng.randint(1, 5)
    sizes = [rng.choice([1, 2, rng.randint(3, 400), rng.randint(400, 5000)]) for _ in range(rng.randint(1, 4))]
    weights = torch.stack([_row(rng, sum(sizes), g) for _ in range(k)])
    sparsities = [rng.choice([*SPARSITIES, rng.random()]) for _ in range(k)]
    rules = [_rule(rng, s) for s in sparsities]
    return sizes, weights, [0.0 if r is None else s for r, s in zip(rules, sparsities, strict=True)], rules


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("seed", range(16))
def test_thresholds_equal_torch_quantile_per_member_and_layer(path, seed):
    sizes, weights, sparsities, rules = _pack(seed)
    with PATHS[path]():
        builder = MaskBuilder(sizes, rules, torch.device("cpu"))
        masks = builder.build(weights, sparsities)
        thresholds = builder.threshold_per_weight(masks).expand_as(weights)
        for k, (row, rule, q) in enumerate(zip(weights.abs(), rules, sparsities, strict=True)):
            whole = rule is None or rule.threshold_mode == "global"
            parts = [row] * len(sizes) if whole else list(row.split(sizes))
            for part, found in zip(parts, thresholds[k].split(sizes), strict=True):
                assert (found == found[0]).all()
                expected = torch.quantile(part.double(), q).float() if q > 0 else torch.zeros(())
                torch.testing.assert_close(found[0], expected, rtol=1e-6, atol=0)
                assert torch.equal(found[0], magnitude_quantiles(part, [q])[0])  # the solo engine's value, bit for bit
    if not any(rule is not None and rule.threshold_mode == "layer" for rule in rules):
        assert builder.threshold_per_weight(masks).shape == (len(rules), 1)


def _per_member(builder: MaskBuilder, masks: Masks, weights: torch.Tensor) -> list[dict[str, torch.Tensor]]:
    """Each member's T, kept, counts, thetas, eliminated and m per weight, as plain ``[N]`` or ``[L]`` tensors."""
    k, n = weights.shape[0], len(builder.sizes)
    thresholds = builder.threshold_per_weight(masks).expand_as(weights)
    scale = builder.gradient_scale(masks)
    eliminated = torch.zeros_like(weights, dtype=torch.bool) if masks.eliminated is None else masks.eliminated
    counts = (
        torch.zeros(k, n, dtype=torch.long) if masks.eliminated_counts is None else masks.table(masks.eliminated_counts)
    )
    return [
        {
            "active": masks.active.expand(k, 1)[row, 0],
            "thresholds": thresholds[row],
            "kept": masks.kept[row],
            "kept_counts": masks.table(masks.kept_counts)[row],
            "thetas": masks.layer_thetas()[row],
            "eliminated": eliminated[row],
            "eliminated_counts": counts[row],
            "scale": torch.ones_like(weights[row]) if scale is None else scale[row],
        }
        for row in range(k)
    ]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("seed", range(16))
def test_each_member_gets_the_masks_it_gets_alone(path, seed):
    """K members built together equal each built alone (K = 1, the Sparsifier's case), bit for bit, m included."""
    sizes, weights, sparsities, rules = _pack(100 + seed)
    with PATHS[path]():
        builder = MaskBuilder(sizes, rules, torch.device("cpu"))
        together = _per_member(builder, builder.build(weights, sparsities), weights)
        for k, (row, rule, s) in enumerate(zip(weights, rules, sparsities, strict=True)):
            alone = MaskBuilder(sizes, [rule], torch.device("cpu"))
            (expected,) = _per_member(alone, alone.build(row[None].clone(), [s]), row[None])
            for name, value in expected.items():
                assert torch.equal(together[k][name], value), (k, name)
            if rule is None:  # dense: w itself, nothing eliminated, theta 1, m 1
                assert not together[k]["active"]
                assert torch.equal(together[k]["thetas"], torch.ones(len(sizes)))
                assert not together[k]["eliminated"].any()
                assert (together[k]["scale"] == 1).all()


@pytest.mark.parametrize("path", PATHS)
def test_the_gradient_scale_is_one_kept_theta_pruned_zero_eliminated(path):
    """m of formulas §1.3 per member: 1 where kept, theta where pruned, 0 where eliminated; 1 on a dense row."""
    g = torch.Generator().manual_seed(5)
    sizes = [64, 200]
    weights = torch.randn(3, sum(sizes), generator=g)
    rules = [
        MemberRule("global", ConstantTheta(0.5), Elimination(0.5, 0.8, "global")),
        MemberRule("layer", LogDensityTheta(0.3, mode="layer"), Elimination(0.0, 0.8)),
        None,
    ]
    with PATHS[path]():
        builder = MaskBuilder(sizes, rules, torch.device("cpu"))
        masks = builder.build(weights, [0.8, 0.6, 0.0])
        scale = builder.gradient_scale(masks)
    assert scale is not None
    assert masks.eliminated is not None
    kept, gone = masks.kept, masks.eliminated
    assert (scale[0][kept[0]] == 1).all()
    assert gone[0].any()
    assert (scale[0][gone[0]] == 0).all()
    assert (scale[0][~kept[0] & ~gone[0]] == 0.5).all()
    thetas = masks.layer_thetas()[1]
    for layer, (piece, kept_piece) in enumerate(zip(scale[1].split(sizes), kept[1].split(sizes), strict=True)):
        assert (piece[kept_piece] == 1).all()
        assert (piece[~kept_piece] == thetas[layer]).all()
    assert (scale[2] == 1).all()


def test_eliminations_of_mixed_modes_in_one_pack():
    """Global and layer elimination, global and layer thresholds side by side, each t as its quantile defines it."""
    g = torch.Generator().manual_seed(4)
    sizes = [30, 1, 200]
    weights = torch.randn(4, sum(sizes), generator=g)
    rules = [
        MemberRule("global", ConstantTheta(1.0), Elimination(0.5, 0.8, "global")),
        MemberRule("layer", ConstantTheta(1.0), Elimination(0.25, 0.8, "layer")),
        MemberRule("global", ConstantTheta(1.0), Elimination(0.4, 0.8, "layer")),
        None,
    ]
    masks = MaskBuilder(sizes, rules, torch.device("cpu")).build(weights, [0.8, 0.6, 0.7, 0.0])
    assert masks.eliminated is not None
    assert masks.eliminated_counts is not None
    kept_counts, eliminated_counts = masks.table(masks.kept_counts), masks.table(masks.eliminated_counts)
    magnitudes = weights.abs()
    assert torch.equal(masks.eliminated[0], magnitudes[0] < torch.quantile(magnitudes[0], 0.5 * 0.8))
    for k in (1, 2):
        parts = magnitudes[k].split(sizes)
        reached = 1.0 - kept_counts[k] / torch.tensor(sizes)
        rule = rules[k]
        assert rule is not None
        rho = rule.elimination.rho
        expected = [
            p < (torch.quantile(p, rho * float(r)) if r > 0 else 0.0) for p, r in zip(parts, reached, strict=True)
        ]
        assert torch.equal(masks.eliminated[k], torch.cat(expected))
    assert not masks.eliminated[3].any()
    assert eliminated_counts[3].sum() == 0
    assert eliminated_counts[0].sum() == int(masks.eliminated[0].sum()) > 0


def test_kept_members_keep_their_masks_and_build_theirs_alone():
    g = torch.Generator().manual_seed(9)
    sizes = [50, 7, 120]
    weights = torch.randn(3, sum(sizes), generator=g)
    rules = [
        MemberRule("layer", LogDensityTheta(0.2, mode="layer"), Elimination(0.3, 0.9, "layer")),
        None,
        MemberRule("global", ConstantTheta(0.5), Elimination(0.3, 0.9, "global")),
    ]
    builder = MaskBuilder(sizes, rules, torch.device("cpu"))
    before = builder.build(weights, [0.5, 0.0, 0.6])
    rows = [2, 0]
    builder.keep(rows)
    kept = builder.restore(before.kept[rows], [0.6, 0.5], slot=0)
    assert torch.equal(kept.kept, before.kept[rows])
    assert torch.equal(kept.table(kept.kept_counts), before.table(before.kept_counts)[rows])
    found = _per_member(builder, builder.build(weights[rows], [0.6, 0.5]), weights[rows])
    alone = MaskBuilder(sizes, [rules[i] for i in rows], torch.device("cpu"))
    expected = _per_member(alone, alone.build(weights[rows], [0.6, 0.5]), weights[rows])
    assert len(found) == 2
    for f, e in zip(found, expected, strict=True):
        for name, value in e.items():
            assert torch.equal(f[name], value), name
    assert builder.threshold_per_weight(builder.build(weights[rows], [0.6, 0.5])).shape == weights[rows].shape
