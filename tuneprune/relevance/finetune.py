"""Optional fine-tuning of a channel-pruned model with its mask held fixed (formulas §6).

The pruned tensors are zero and a :class:`FrozenWeights` hook zeroes their gradients after
every backward pass, so SGD's momentum and weight decay (both proportional to the zero
weights or gradients) leave them exactly zero.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch.nn as nn

from tuneprune.data import DatasetSplits
from tuneprune.relevance.channels import conv_units, prune_channels, pruned_entries
from tuneprune.relevance.config import FinetuneSettings
from tuneprune.training.config import RunConfig
from tuneprune.training.hooks import FrozenWeights
from tuneprune.training.loop import train


def finetune_pruned(
    model: nn.Module, channels: Sequence[int], data: DatasetSplits, run_config: RunConfig, settings: FinetuneSettings
) -> nn.Module:
    """A pruned copy of ``model`` trained ``settings.epochs`` more epochs, on the CPU on return.

    The recipe is ``run_config``'s (the model's own) with the fine-tuning epochs, learning
    rate and batch size, dense (no sparsity engine). ``model`` itself is left untouched.
    """
    tuned = copy.deepcopy(model)
    units = conv_units(tuned)
    prune_channels(units, channels)
    config = run_config.model_copy(
        update={"epochs": settings.epochs, "lr": settings.lr, "batch_size": settings.batch_size, "sparsity": None}
    )
    return train(config, model=tuned, data=data, hooks=[FrozenWeights(pruned_entries(units, channels))]).model
