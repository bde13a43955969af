"""Fine-tuning of a pruned model, mask held fixed and BatchNorm frozen (SPEC 5 recipe).

It runs through the ordinary training loop with a :class:`FixedMask` hook: the gradient
of every pruned weight is zeroed before the step, so SGD (whose weight decay and
momentum of a zero weight with a zero gradient stay zero) never revives it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn

from tuneprune.data import DatasetSplits
from tuneprune.stochastic.config import FinetuneConfig
from tuneprune.training import RunConfig, train

NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d)


class FixedMask:
    """Training hook: pruned weights get no gradient; BatchNorm stays in eval mode."""

    def __init__(self, model: nn.Module, modules: Sequence[nn.Module], masks: Sequence[torch.Tensor]) -> None:
        self.pairs = list(zip(modules, masks))
        self.norms = [m for m in model.modules() if isinstance(m, NORM_TYPES)]

    def before_iteration(self, step: int) -> None:
        for norm in self.norms:
            norm.eval()

    def after_backward(self, step: int) -> None:
        for module, mask in self.pairs:
            if module.weight.grad is not None:
                module.weight.grad.mul_(mask)

    def end_epoch(self, epoch: int) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Stateless: the masks come with the model."""


def finetune(
    model: nn.Module,
    modules: Sequence[nn.Module],
    masks: Sequence[torch.Tensor],
    data: DatasetSplits,
    run_config: RunConfig,
    settings: FinetuneConfig,
) -> dict[str, float]:
    """Fine-tune ``model`` in place (SPEC 5: SGD, constant lr, no clipping); returns the last epoch's metrics.

    The model stays on the device it was on.
    """
    device = next(model.parameters()).device
    for norm in model.modules():
        if isinstance(norm, NORM_TYPES):
            norm.requires_grad_(False)
    config = run_config.model_copy(
        update={
            "epochs": settings.epochs,
            "lr": settings.lr,
            "momentum": settings.momentum,
            "nesterov": False,
            "weight_decay": settings.weight_decay,
            "batch_size": settings.batch_size,
            "lr_schedule": "constant",
            "grad_clip": None,
            "sparsity": None,
        }
    )
    result = train(config, model=model, data=data, hooks=[FixedMask(model, modules, masks)])
    model.to(device)
    return result.final
