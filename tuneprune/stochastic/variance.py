"""Feature variance per layer, and its plot across models (formulas §5, "variance explosion")."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn as nn

from tuneprune.output.plotting import new_figure, save_figure
from tuneprune.sparsity import prunable_layers


@torch.no_grad()
def feature_variance(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> dict[str, float]:
    """Per Conv2d/Linear output: the variance of each channel over (batch, H, W), summed over channels,
    averaged over the batches of ``x`` (formulas §5). Population variance; eval mode."""
    totals: dict[str, torch.Tensor] = {}

    def hook(name: str):
        def record(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            channels = output.detach().transpose(0, 1).reshape(output.shape[1], -1)
            value = channels.var(dim=1, correction=0).sum()
            totals[name] = totals[name] + value if name in totals else value

        return record

    handles = [module.register_forward_hook(hook(name)) for name, module in prunable_layers(model)]
    was_training = model.training
    model.eval()
    try:
        batches = 0
        for i in range(0, len(x), batch_size):
            model(x[i : i + batch_size])
            batches += 1
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return {name: float(total) / max(batches, 1) for name, total in totals.items()}


def plot_feature_variance(table: Mapping[str, Mapping[str, float]], path: str | Path) -> Path:
    """Line plot, one line per model in ``table`` (model -> layer -> variance), log scale (Agg backend)."""
    layers = list(next(iter(table.values())))
    fig, (ax,) = new_figure(width=max(6.0, 0.35 * len(layers)), height=4.0, grid=False)
    for label, values in table.items():
        ax.plot(range(len(layers)), [values[name] for name in layers], marker="o", label=label)
    ax.set_yscale("log")
    ax.set_xticks(range(len(layers)), layers, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("feature variance (sum over channels)")
    ax.set_title("Feature variance per layer")
    ax.legend()
    return save_figure(fig, path)
