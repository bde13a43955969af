"""Evaluation of every member of a stack on its own split, batch by batch, without autograd."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from tuneprune.packing.stack import StackedModel


@torch.no_grad()
def evaluate_stacked(
    stack: StackedModel,
    weights: torch.Tensor | None,
    xs: Sequence[torch.Tensor],
    ys: Sequence[torch.Tensor],
    batch_size: int,
) -> tuple[list[float], list[float]]:
    """Each member's ``(accuracy, mean cross-entropy)`` on ``(xs[k], ys[k])`` in eval mode.

    The batches and sums are :func:`tuneprune.training.evaluate`'s, so with the ``loop``
    forward a member's accuracy is bit for bit the one it has alone.
    """
    count = len(ys[0])
    correct = torch.zeros(len(xs), device=ys[0].device)
    loss_sum = torch.zeros(len(xs), device=ys[0].device)
    for i in range(0, count, batch_size):
        logits = stack.forward(weights, torch.stack([x[i : i + batch_size] for x in xs]), train=False)
        for k, y in enumerate(ys):
            target = y[i : i + batch_size]
            loss_sum[k] += F.cross_entropy(logits[k], target, reduction="sum")
            correct[k] += (logits[k].argmax(1) == target).sum()
    n = max(count, 1)
    return [c / n for c in correct.tolist()], [s / n for s in loss_sum.tolist()]
