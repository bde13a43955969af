"""Fine-tuning of a pruned model, mask held fixed and BatchNorm frozen (formulas §5 recipe).

It runs through the ordinary training loop with a :class:`FrozenWeights` hook: the gradient
of every pruned weight is zeroed before the step, so SGD (whose weight decay and
momentum of a zero weight with a zero gradient stay zero) never revives it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from tuneprune.data import DatasetSplits
from tuneprune.sparsity.layers import PrunableLayer
from tuneprune.stochastic.config import FinetuneConfig
from tuneprune.training import RunConfig, train
from tuneprune.training.hooks import FrozenWeights


def finetune(
    model: nn.Module,
    modules: Sequence[PrunableLayer],
    masks: Sequence[torch.Tensor],
    data: DatasetSplits,
    run_config: RunConfig,
    settings: FinetuneConfig,
) -> dict[str, float]:
    """Fine-tune ``model`` in place (formulas §5: SGD, constant lr, no clipping); returns the last epoch's metrics.

    The model stays on the device it was on.
    """
    device = next(model.parameters()).device
    norms = [m for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    for norm in norms:
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
    frozen = [(module.weight, ~mask.bool()) for module, mask in zip(modules, masks, strict=True)]
    result = train(config, model=model, data=data, hooks=[FrozenWeights(frozen, norms)])
    model.to(device)
    return result.final
