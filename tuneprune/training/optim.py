"""Optimizer and learning-rate schedule of the formulas §1.6 recipe."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn as nn


def has_weight_decay(parameter: torch.Tensor) -> bool:
    """Weight matrices and kernels decay; BatchNorm parameters and biases (1-D) never do (formulas §1.1)."""
    return parameter.ndim > 1


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on weight matrices and kernels only; never on BatchNorm or biases (formulas §1.1)."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for p in model.parameters():
        if p.requires_grad:
            (decay if has_weight_decay(p) else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, config) -> torch.optim.SGD:
    """SGD with momentum over :func:`param_groups` (formulas §1.6)."""
    return torch.optim.SGD(
        param_groups(model, config.weight_decay), lr=config.lr, momentum=config.momentum, nesterov=config.nesterov
    )


def lr_factor(kind: str, total_steps: int) -> Callable[[int], float]:
    """The learning rate at step k as a fraction of the initial one.

    Cosine: ``0.5 * (1 + cos(pi * min(k, total) / total))`` (formulas §1.6); constant: 1.
    """
    if kind == "constant":
        return lambda step: 1.0
    return lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))


def build_lr_schedule(
    optimizer: torch.optim.Optimizer, kind: str, total_steps: int, start_step: int = 0
) -> torch.optim.lr_scheduler.LambdaLR:
    """Cosine decay to 0 stepped per batch (formulas §1.6), or a constant rate, by :func:`lr_factor`;
    at ``start_step`` (a resumed run: the rate of that step, as if stepped to it)."""
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(kind, total_steps), last_epoch=start_step - 1)
