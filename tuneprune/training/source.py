"""Where a trained model comes from: a model file, an MLflow run's artifact, or a fresh training run."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch.nn as nn

from tuneprune.config import ConfigError
from tuneprune.training.checkpoint import MODEL_NAME, load_model
from tuneprune.training.config import RunConfig


def model_from_run(run_id: str, tracking_uri: str | None) -> tuple[nn.Module, RunConfig]:
    """Download the ``model.pt`` artifact of an MLflow run and rebuild the model."""
    import mlflow.artifacts

    from tuneprune.tracking import locate_run

    uri = locate_run(run_id, tracking_uri)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=MODEL_NAME, dst_path=tmp, tracking_uri=uri)
        except Exception as err:
            raise ConfigError(f"--from-run {run_id}: no {MODEL_NAME} artifact in {uri} ({str(err).splitlines()[0][:120]})") from None
        return load_model(Path(path))


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
    training ``train_config`` now (with a progress bar if ``progress``).
    """
    if checkpoint is not None:
        return load_model(checkpoint)
    if from_run is not None:
        return model_from_run(from_run, tracking_uri)
    from tuneprune.training.loop import train

    result = train(train_config, progress=progress)
    return result.model, train_config
