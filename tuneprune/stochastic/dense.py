"""The dense model Stochastic Pruning starts from, and the data it is evaluated on (formulas §5)."""

from __future__ import annotations

from pathlib import Path

import torch.nn as nn

from tuneprune.data import DatasetSplits, load_dataset
from tuneprune.runs import obtain_model
from tuneprune.training import RunConfig, resolve_device


def dense_model_and_data(
    train: RunConfig,
    checkpoint: str | Path | None = None,
    from_run: str | None = None,
    tracking_uri: str | None = None,
    progress: bool = False,
) -> tuple[nn.Module, RunConfig, DatasetSplits]:
    """The dense model (from a model file, an MLflow run, or trained on ``train`` now), the run
    config that produced it, and that run's dataset splits; model and data on ``train.device``."""
    model, run_config = obtain_model(train, checkpoint, from_run, tracking_uri, progress)
    run_config = run_config.model_copy(update={"device": train.device})
    device = resolve_device(run_config.device, "train.device")
    return model.to(device), run_config, load_dataset(run_config).to(device)
