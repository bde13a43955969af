"""One run: a pack of one (formulas §1.6 recipe), with per-epoch checkpoints and exact resume."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn as nn

from tuneprune.data import DatasetSplits, load_dataset
from tuneprune.models import create_model
from tuneprune.output.progress import ProgressBar
from tuneprune.shared.config import ConfigError
from tuneprune.training.checkpoint import CHECKPOINT_NAME, config_differences, load_member, save_member
from tuneprune.training.config import RunConfig
from tuneprune.training.hooks import TrainHook
from tuneprune.training.trainer import PackedTrainer, TrainingDiverged, TrainResult

EpochCallback = Callable[[dict[str, float], Path | None], None]


def untrained_model(config: RunConfig) -> nn.Module:
    """``config.model`` built for its dataset's classes and channels, as :func:`train` builds it before the first
    epoch: what a command checks the layer names of its input against before it trains the model."""
    data = load_dataset(config)
    return create_model(config.model, data.num_classes, data.in_channels)


def train(
    config: RunConfig,
    *,
    model: nn.Module | None = None,
    data: DatasetSplits | None = None,
    callbacks: Sequence[EpochCallback] = (),
    hooks: Sequence[TrainHook] = (),
    checkpoint_dir: str | Path | None = None,
    resume_from: str | Path | None = None,
    progress: bool = False,
) -> TrainResult:
    """Train ``config.model`` (or the given ``model``, in place) on ``config.dataset``: a
    :class:`~tuneprune.training.trainer.PackedTrainer` of one member, so that a run alone and a
    member of a pack are one code path.

    Per epoch the metrics ``train_loss, train_acc, val_acc, val_loss, test_acc, test_loss,
    lr, train_time, epoch_time`` (plus the hooks' and the sparsity engine's) are appended to
    the history and handed to every callback together with the checkpoint written for that
    epoch (``checkpoint_dir/checkpoint.pt``, atomically: the member's state,
    :data:`~tuneprune.training.checkpoint.RUN_STATE_FORMAT`, with the torch RNG state).
    ``resume_from`` (a run state file, of this run or of the trial trained as a pack
    member, or a directory holding ``checkpoint.pt``) restores weights, momentum, learning
    rate, sparsity state, hooks and RNG state and continues with the next epoch, so the
    result equals an uninterrupted run (``ConfigError`` naming the differing fields when the
    state is of another config). A loss that turns NaN or infinite raises
    :class:`~tuneprune.training.trainer.TrainingDiverged` at the end of its epoch.
    """
    state = None
    if resume_from is not None:
        path = Path(resume_from)
        path = path / CHECKPOINT_NAME if path.is_dir() else path
        state = load_member(path)
        if differing := config_differences(config, state):
            raise ConfigError(
                f"{path}: the checkpoint of a run whose config differs in {', '.join(differing)}; "
                "resume it with its own config, or start afresh"
            )
    trainer = PackedTrainer(
        [config],
        resume=[state],
        models=None if model is None else [model],
        data=None if data is None else [data],
        hooks=[hooks],
    )
    if state is not None and "torch_rng" in state:
        torch.set_rng_state(state["torch_rng"])
    bar = ProgressBar("train", config.epochs, trainer.epoch) if progress else None

    def end_epoch(member_index: int, metrics: dict[str, float]) -> None:
        checkpoint = None
        if checkpoint_dir is not None:
            run_state = {**trainer.member_state(member_index), "torch_rng": torch.get_rng_state()}
            checkpoint = save_member(run_state, Path(checkpoint_dir) / CHECKPOINT_NAME)
        for callback in callbacks:
            callback(metrics, checkpoint)
        if bar is not None:
            sparsity = f" sparsity={metrics['sparsity']:.4f}" if "sparsity" in metrics else ""
            bar.advance(f"val_acc={metrics['val_acc']:.4f}{sparsity}")

    try:
        (member,) = trainer.run([end_epoch])
    finally:  # also on Ctrl-C: a live display left open keeps the terminal's cursor hidden
        if bar is not None:
            bar.close()
    if member.status == "failed":
        raise TrainingDiverged(member.error)
    assert member.result is not None  # finished
    return member.result
