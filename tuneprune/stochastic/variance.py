"""Feature variance per layer, and its plot across models (formulas §5, "variance explosion")."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn as nn

from tuneprune.output.plotting import new_figure, save_figure
from tuneprune.sparsity import prunable_layers
from tuneprune.training.evaluate import eval_mode


@torch.no_grad()
def feature_variance(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> dict[str, float]:
    """Per Conv2d/Linear output: the variance of each channel over (batch, H, W), summed over channels,
    averaged over the batches of ``x`` (formulas §5). Population variance; eval mode."""
    names: dict[nn.Module, str] = {module: name for name, module in prunable_layers(model)}
    totals: dict[str, torch.Tensor] = {}

    def record(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        channels = output.detach().transpose(0, 1).reshape(output.shape[1], -1)
        name = names[module]
        totals[name] = totals.get(name, 0) + channels.var(dim=1, correction=0).sum()

    handles = [module.register_forward_hook(record) for module in names]
    starts = range(0, len(x), batch_size)
    try:
        with eval_mode(model):
            for i in starts:
                model(x[i : i + batch_size])
    finally:
        for handle in handles:
            handle.remove()
    return {name: float(total) / max(len(starts), 1) for name, total in totals.items()}


def plot_feature_variance(table: Mapping[str, Mapping[str, float]], path: str | Path) -> Path:
    """Line plot of ``table`` (layer -> model -> variance), one line per model, log scale (Agg backend)."""
    layers = list(table)
    fig, (ax,) = new_figure(width=max(6.0, 0.35 * len(layers)), height=4.0, grid=False)
    for label in next(iter(table.values())):
        ax.plot(range(len(layers)), [table[name][label] for name in layers], marker="o", label=label)
    ax.set_yscale("log")
    ax.set_xticks(range(len(layers)), layers, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("feature variance (sum over channels)")
    ax.set_title("Feature variance per layer")
    ax.legend()
    return save_figure(fig, path)
