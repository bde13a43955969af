"""Where a trained model comes from: a model file, an MLflow run's artifact, or a fresh training run."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch.nn as nn

from tuneprune.shared.config import MACHINE_FIELDS
from tuneprune.tracking import download_artifact, locate_run
from tuneprune.training import RunConfig, load_model, train
from tuneprune.training.checkpoint import MODEL_NAME


def obtain_model(
    train_config: RunConfig,
    checkpoint: str | Path | None = None,
    from_run: str | None = None,
    tracking_uri: str | None = None,
    progress: bool = False,
) -> tuple[nn.Module, RunConfig]:
    """A trained model and the config that produced it.

    From ``checkpoint`` (a ``model.pt`` written by ``tuneprune train --out``), from the
    ``model.pt`` artifact of MLflow run ``from_run``, or, when neither is given, by
    training ``train_config`` now (with a progress bar if ``progress``). A loaded model's
    config is the one it was trained with, but for the fields of :data:`MACHINE_FIELDS`
    that ``train_config`` sets itself (``data_dir``, ``download``, ``num_threads``,
    ``device``): a model trained on another machine is evaluated on this one's data.
    """
    if checkpoint is not None:
        model, config = load_model(checkpoint)
    elif from_run is not None:
        uri = locate_run(from_run, tracking_uri)
        with tempfile.TemporaryDirectory() as tmp:
            model, config = load_model(
                download_artifact(f"--from-run {from_run}", uri, from_run, MODEL_NAME, Path(tmp))
            )
    else:
        return train(train_config, progress=progress).model, train_config
    here = {f: getattr(train_config, f) for f in MACHINE_FIELDS if f in train_config.model_fields_set}
    return model, config.model_copy(update=here)
