"""Packed masks: one selection over the [K, N] matrix gives each member the solo engine's T, t and masks (formulas §1.4, §4).

Members differ in sparsity, threshold mode, theta policy and elimination; a dense member
(rule None) is left as it is. Every check runs on the CPU path (NumPy partitions) and on
the accelerator path (radix select, run on CPU tensors).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable
from typing import Any, Literal

import pytest
import torch

from tuneprune.packing.masks import MemberRule, PackedMaskBuilder
from tuneprune.sparsity.dispatch import accelerator_path
from tuneprune.sparsity.drop import Elimination
from tuneprune.sparsity.flat import FlatLayout
from tuneprune.sparsity.masks import MaskBuilder
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
        masks = PackedMaskBuilder(sizes, rules, torch.device("cpu")).build(weights, sparsities)
        thresholds = masks.thresholds.expand_as(weights)
        for k, (row, rule, q) in enumerate(zip(weights.abs(), rules, sparsities, strict=True)):
            whole = rule is None or rule.threshold_mode == "global"
            parts = [row] * len(sizes) if whole else list(row.split(sizes))
            for part, found in zip(parts, thresholds[k].split(sizes), strict=True):
                assert (found == found[0]).all()
                expected = torch.quantile(part.double(), q).float() if q > 0 else torch.zeros(())
                torch.testing.assert_close(found[0], expected, rtol=1e-6, atol=0)
                assert torch.equal(found[0], magnitude_quantiles(part, [q])[0])  # the solo engine's value, bit for bit
    if not any(rule is not None and rule.threshold_mode == "layer" for rule in rules):
        assert masks.thresholds.shape == (len(rules), 1)


def _solo(row: torch.Tensor, sizes: list[int], rule: MemberRule, sparsity: float):
    layout = FlatLayout(list(row.split(sizes)))
    masks = MaskBuilder(layout, rule.threshold_mode, rule.elimination).build(row.clone(), sparsity, slot=0)
    thetas = torch.as_tensor(rule.theta_policy.layer_thetas(masks.kept_counts / layout.segments.lengths))
    return layout.segments, masks, thetas.float().expand(len(sizes))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("seed", range(16))
def test_each_member_gets_the_masks_it_gets_alone(path, seed):
    sizes, weights, sparsities, rules = _pack(100 + seed)
    n = len(sizes)
    with PATHS[path]():
        packed = PackedMaskBuilder(sizes, rules, torch.device("cpu")).build(weights, sparsities)
        thresholds, theta_per_weight = packed.thresholds.expand_as(weights), packed.theta_per_weight.expand_as(weights)
        for k, (row, rule, s) in enumerate(zip(weights, rules, sparsities, strict=True)):
            # None: no member eliminates at its S_k
            eliminated = torch.zeros_like(row, dtype=torch.bool) if packed.eliminated is None else packed.eliminated[k]
            eliminated_counts = (
                torch.zeros(n, dtype=torch.long) if packed.eliminated_counts is None else packed.eliminated_counts[k]
            )
            if rule is None:  # dense: w itself, nothing eliminated, theta 1
                assert not packed.active[k]
                assert torch.equal(packed.thetas[k], torch.ones(n))
                assert not eliminated.any()
                continue
            segments, solo, thetas = _solo(row, sizes, rule, s)
            assert bool(packed.active[k]) == (s > 0)
            assert torch.equal(thresholds[k], segments.spread(solo.thresholds))
            assert torch.equal(packed.kept[k], solo.kept_flat)
            assert torch.equal(packed.kept_counts[k], solo.kept_counts)
            assert torch.equal(packed.thetas[k], thetas)
            assert torch.equal(theta_per_weight[k], segments.spread(thetas))
            if solo.eliminated_flat is None:  # the CPU path skips an elimination that does not apply
                assert not eliminated.any()
            else:
                assert torch.equal(eliminated, solo.eliminated_flat)
                assert torch.equal(eliminated_counts, solo.eliminated_counts)


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
    masks = PackedMaskBuilder(sizes, rules, torch.device("cpu")).build(weights, [0.8, 0.6, 0.7, 0.0])
    assert masks.eliminated is not None
    assert masks.eliminated_counts is not None
    magnitudes = weights.abs()
    assert torch.equal(masks.eliminated[0], magnitudes[0] < torch.quantile(magnitudes[0], 0.5 * 0.8))
    for k in (1, 2):
        parts = magnitudes[k].split(sizes)
        reached = 1.0 - masks.kept_counts[k] / torch.tensor(sizes)
        rule = rules[k]
        assert rule is not None
        rho = rule.elimination.rho
        expected = [
            p < (torch.quantile(p, rho * float(r)) if r > 0 else 0.0) for p, r in zip(parts, reached, strict=True)
        ]
        assert torch.equal(masks.eliminated[k], torch.cat(expected))
    assert not masks.eliminated[3].any()
    assert masks.eliminated_counts[3].sum() == 0
    assert masks.eliminated_counts[0].sum() == int(masks.eliminated[0].sum()) > 0


def test_kept_rows_build_the_masks_of_those_members():
    g = torch.Generator().manual_seed(9)
    sizes = [50, 7, 120]
    weights = torch.randn(3, sum(sizes), generator=g)
    rules = [
        MemberRule("layer", LogDensityTheta(0.2, mode="layer"), Elimination(0.3, 0.9, "layer")),
        None,
        MemberRule("global", ConstantTheta(0.5), Elimination(0.3, 0.9, "global")),
    ]
    builder = PackedMaskBuilder(sizes, rules, torch.device("cpu"))
    builder.build(weights, [0.5, 0.0, 0.6])
    rows = [2, 0]
    builder.keep(rows)
    found = builder.build(weights[rows], [0.6, 0.5])
    alone = PackedMaskBuilder(sizes, [rules[i] for i in rows], torch.device("cpu")).build(weights[rows], [0.6, 0.5])
    for name in ("thresholds", "kept", "kept_counts", "thetas", "theta_per_weight", "eliminated", "eliminated_counts"):
        assert torch.equal(getattr(found, name), getattr(alone, name)), name
    assert found.thresholds.shape == weights[rows].shape  # member 0 has layer thresholds
