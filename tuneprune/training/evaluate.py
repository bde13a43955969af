"""Batched evaluation without autograd."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn as nn
import torch.nn.functional as F

from tuneprune.training.stack import StackedModel, join_members


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode inside the block; its training mode as it was after it, also when the block raises."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> tuple[float, float]:
    """Return ``(accuracy, mean cross-entropy loss)`` of ``model`` on ``(x, y)`` in eval mode."""
    correct = torch.zeros((), device=x.device)
    loss_sum = torch.zeros((), device=x.device)
    with eval_mode(model):
        for i in range(0, len(x), batch_size):
            logits = model(x[i : i + batch_size])
            target = y[i : i + batch_size]
            loss_sum += F.cross_entropy(logits, target, reduction="sum")
            correct += (logits.argmax(1) == target).sum()
    n = max(len(x), 1)
    return correct.item() / n, loss_sum.item() / n


@torch.no_grad()
def evaluate_stacked(
    stack: StackedModel,
    weights: torch.Tensor | None,
    xs: Sequence[torch.Tensor],
    ys: Sequence[torch.Tensor],
    batch_size: int,
) -> tuple[list[float], list[float]]:
    """Each member's ``(accuracy, mean cross-entropy)`` on ``(xs[k], ys[k])`` in eval mode, in :func:`evaluate`'s
    batches and sums: with the ``loop`` forward a member's accuracy is bit for bit the one it has alone."""
    was_training = stack.models[0].training
    stack.set_training(False)
    count = len(ys[0])
    correct = torch.zeros(len(xs), device=ys[0].device)
    loss_sum = torch.zeros(len(xs), device=ys[0].device)
    for i in range(0, count, batch_size):
        logits = stack.forward(weights, join_members([x[i : i + batch_size] for x in xs]))
        for k, y in enumerate(ys):
            target = y[i : i + batch_size]
            loss_sum[k] += F.cross_entropy(logits[k], target, reduction="sum")
            correct[k] += (logits[k].argmax(1) == target).sum()
    stack.set_training(was_training)
    n = max(count, 1)
    return [c / n for c in correct.tolist()], [s / n for s in loss_sum.tolist()]
