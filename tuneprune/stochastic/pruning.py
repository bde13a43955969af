"""The layers a sample touches and noisy samples pruned one-shot by global magnitude, re-created from (seed, index)
(formulas §5, formulas §9)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn as nn

from tuneprune.shared.config import ConfigError
from tuneprune.sparsity import prunable_layers, prunable_sparsity
from tuneprune.sparsity.layers import PrunableLayer
from tuneprune.stochastic.config import TargetConfig
from tuneprune.training.evaluate import evaluate

Layers = list[tuple[str, PrunableLayer]]


def target_layers(model: nn.Module, target: TargetConfig) -> Layers:
    """``(name, module)`` of the layers that get noise and are pruned, in registration order."""
    modules = dict(model.named_modules())
    unknown = [name for name in target.exclude if name not in modules]
    if unknown:
        raise ConfigError(f"target.exclude: no module named {unknown[0]!r} in the model")
    prunable = prunable_layers(model)  # the first Conv2d and the last Linear (the classifier), in registration order:
    convs = [name for name, module in prunable if isinstance(module, nn.Conv2d)]
    linears = [name for name, module in prunable if isinstance(module, nn.Linear)]
    excluded = set(target.exclude)
    excluded.update(convs[:1] if target.exclude_first_conv else [])
    excluded.update(linears[-1:] if target.exclude_classifier else [])
    layers = [(name, module) for name, module in prunable_layers(model, target.min_size) if name not in excluded]
    if not layers:
        raise ConfigError("target: every prunable layer is excluded, nothing to prune")
    return layers


def derive_seed(*keys: int) -> int:
    """A 32-bit seed determined by ``keys`` alone, e.g. ``(seed, sample index)`` (formulas §9)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0])


def magnitude_masks(weights: Sequence[torch.Tensor], rate: float) -> list[torch.Tensor]:
    """Keep-masks removing exactly ``round(rate * N)`` smallest-magnitude weights over all ``weights``.

    One global ranking (a stable sort, so ties fall the same way every time), formulas §5.
    """
    flat = torch.cat([w.detach().abs().flatten() for w in weights])
    keep = torch.ones_like(flat, dtype=torch.bool)
    keep[torch.argsort(flat, stable=True)[: round(rate * flat.numel())]] = False
    return [m.view_as(w) for m, w in zip(keep.split([w.numel() for w in weights]), weights, strict=True)]


def sparsities(model: nn.Module, modules: Sequence[PrunableLayer], min_size: int = 0) -> dict[str, float]:
    """Both sparsities of a pruned sample, each named for what it measures (formulas §5).

    ``pruned_layers_sparsity``: zeros over the weights of the layers the rate prunes, what
    the rate controls (``round(r * N) / N``). ``model_sparsity``: zeros over every prunable
    weight of the model (formulas §1.1), the first convolution and the classifier included even
    when they are excluded from pruning, so it stays below the rate.
    """
    zeros = sum(int((m.weight == 0).sum()) for m in modules)
    total = sum(m.weight.numel() for m in modules)
    return {"pruned_layers_sparsity": zeros / total, "model_sparsity": prunable_sparsity(model, min_size)}


class Pruner:
    """Turns a dense model into pruned samples in place (formulas §5).

    A sample adds ``N(0, sigma^2)`` noise to every targeted weight, drawn from a CPU
    ``torch.Generator`` seeded with the sample's seed (so it is the same on any device),
    then prunes by global magnitude; the surviving weights keep their noise. ``groups``
    (lists of indices into ``layers``) get one pruning rate each; by default one group.
    With ``sigma = 0`` the sample is the deterministic pruning of the dense weights.
    """

    def __init__(
        self, layers: Sequence[tuple[str, PrunableLayer]], groups: Sequence[Sequence[int]] | None = None
    ) -> None:
        self.modules = [module for _, module in layers]
        self.dense = [module.weight.detach().clone() for module in self.modules]
        self.groups = [list(g) for g in groups] if groups else [list(range(len(self.modules)))]

    @torch.no_grad()
    def apply(self, sigma: float, rates: float | Sequence[float], seed: int = 0) -> list[torch.Tensor]:
        """Set the model's targeted weights to the sample ``seed``; return its keep-masks."""
        rates = [rates] * len(self.groups) if isinstance(rates, (int, float)) else list(rates)
        if len(rates) != len(self.groups):
            raise ValueError(f"{len(rates)} pruning rates for {len(self.groups)} layer groups")
        noisy = self.dense
        if sigma != 0:
            generator = torch.Generator().manual_seed(seed)
            noisy = [w + sigma * torch.randn(w.shape, generator=generator, dtype=w.dtype).to(w.device) for w in noisy]
        masks: list[torch.Tensor] = [torch.empty(0)] * len(noisy)
        for group, rate in zip(self.groups, rates, strict=True):
            for i, mask in zip(group, magnitude_masks([noisy[i] for i in group], rate), strict=True):
                masks[i] = mask
        for module, weight, mask in zip(self.modules, noisy, masks, strict=True):
            module.weight.copy_(weight * mask)
        return masks

    @torch.no_grad()
    def restore(self) -> None:
        """Put the dense weights back."""
        for module, weight in zip(self.modules, self.dense, strict=True):
            module.weight.copy_(weight)


def score_samples(
    model: nn.Module,
    pruner: Pruner,
    x: torch.Tensor,
    y: torch.Tensor,
    sigma: float,
    rates: float | Sequence[float],
    seeds: Sequence[int],
    batch_size: int = 1024,
) -> list[float]:
    """The accuracy on ``(x, y)`` of the sample of every seed in ``seeds`` (batched, no autograd)."""
    accuracies = []
    for seed in seeds:
        pruner.apply(sigma, rates, seed)
        accuracies.append(evaluate(model, x, y, batch_size)[0])
    return accuracies
