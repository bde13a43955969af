"""The training loop: formulas §1.6 recipe, per-epoch metrics, checkpoints and exact resume."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from tuneprune.data import DatasetSplits, TensorLoader, load_dataset
from tuneprune.models import create_model
from tuneprune.output.progress import ProgressBar
from tuneprune.sparsity.layers import plain_name
from tuneprune.training.checkpoint import CHECKPOINT_NAME, RUN_STATE_FORMAT, load_run_state, save_atomic
from tuneprune.training.config import RunConfig
from tuneprune.training.evaluate import evaluate
from tuneprune.training.hooks import TrainHook
from tuneprune.training.optim import build_lr_schedule, build_optimizer

EpochCallback = Callable[[dict[str, float], Path | None], None]


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass
class TrainResult:
    """A finished run: the plain (finalized) model and the per-epoch metric history."""

    model: nn.Module
    config: RunConfig
    num_classes: int
    in_channels: int
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def final(self) -> dict[str, float]:
        return self.history[-1] if self.history else {}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device = 'cuda' but CUDA is not available on this machine")
    return torch.device(name)


def divergence(losses: torch.Tensor, epoch: int, steps_per_epoch: int) -> str | None:
    """The message naming the first step of the epoch whose loss was NaN or infinite; None when all were finite.

    The losses stay on the device during the epoch; this is the epoch's one read of them.
    """
    finite = torch.isfinite(losses)
    if bool(finite.all()):
        return None
    first = int(finite.int().argmin())
    step = epoch * steps_per_epoch + first
    return f"training loss became {losses[first].item()} at epoch {epoch + 1}, step {step}"


def _run_state(
    config: RunConfig,
    epoch: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    sparsifier: TrainHook | None,
    hooks: Sequence[TrainHook],
    history: list[dict[str, float]],
) -> dict[str, Any]:
    """The run's state after ``epoch`` epochs in the one format of a run or pack member (``RUN_STATE_FORMAT``)."""
    params = dict(model.named_parameters())
    momentum = {
        plain_name(name): optimizer.state[p]["momentum_buffer"]
        for name, p in params.items()
        if optimizer.state.get(p, {}).get("momentum_buffer") is not None
    }
    return {
        "format": RUN_STATE_FORMAT,
        "config": config.model_dump(mode="json"),
        "epoch": epoch,
        "history": history,
        "model": {plain_name(name): t for name, t in model.state_dict().items()},
        "momentum": momentum,
        "sparsity": sparsifier.state_dict() if sparsifier is not None else None,
        "hooks": [hook.state_dict() for hook in hooks],
        "torch_rng": torch.get_rng_state(),
    }


def _restore(
    state: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    sparsifier: TrainHook | None,
    hooks: Sequence[TrainHook],
    steps_per_epoch: int,
) -> None:
    """Go on from a run state (a solo run's or a pack member's): weights, momentum, sparsity, hooks, RNG."""
    names = {plain_name(name): name for name in model.state_dict()}
    model.load_state_dict({names[name]: t for name, t in state["model"].items()})
    for name, p in model.named_parameters():
        buffer = state["momentum"].get(plain_name(name))
        if buffer is not None:
            optimizer.state[p]["momentum_buffer"] = buffer.to(p.device)
    if sparsifier is not None:
        sparsifier.load_state_dict({"iteration": int(state["epoch"]) * steps_per_epoch, **state["sparsity"]})
    for hook, hook_state in zip(hooks, state.get("hooks", []), strict=False):
        hook.load_state_dict(hook_state)
    if "torch_rng" in state:
        torch.set_rng_state(state["torch_rng"])


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
    """Train ``config.model`` (or the given ``model``) on ``config.dataset``.

    Per epoch the metrics ``train_loss, train_acc, val_loss, val_acc, test_loss, test_acc,
    lr, train_time, epoch_time`` (plus the sparsity engine's) are appended to the history
    and handed to every callback together with the checkpoint written for that epoch
    (``checkpoint_dir/checkpoint.pt``, atomically, a run state: the format of a pack
    member's, :data:`~tuneprune.training.checkpoint.RUN_STATE_FORMAT`). ``resume_from`` (a
    run state file, of this run or of the trial trained as a pack member, or a directory
    holding ``checkpoint.pt``) restores weights, momentum, learning rate, sparsity state,
    hooks and RNG state and continues with the next epoch, so the result equals an
    uninterrupted run.
    """
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    device = resolve_device(config.device)
    data = (data if data is not None else load_dataset(config)).to(device)
    torch.manual_seed(config.seed)
    if model is None:
        model = create_model(config.model, data.num_classes, data.in_channels)
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)

    steps_per_epoch = math.ceil(len(data.x_train) / config.batch_size)
    user_hooks = list(hooks)
    sparsifier = None
    if config.sparsity is not None:
        from tuneprune.sparsity import Sparsifier

        sparsifier = Sparsifier.from_config(model, config.sparsity, steps_per_epoch, config.epochs)
    hooks = [*user_hooks, *([sparsifier] if sparsifier is not None else [])]

    state = None
    if resume_from is not None:
        path = Path(resume_from)
        state = load_run_state(path / CHECKPOINT_NAME if path.is_dir() else path)
    start_epoch = int(state["epoch"]) if state is not None else 0
    history: list[dict[str, float]] = list(state["history"]) if state is not None else []
    optimizer = build_optimizer(model, config)
    lr_schedule = build_lr_schedule(
        optimizer, config.lr_schedule, steps_per_epoch * config.epochs, start_step=start_epoch * steps_per_epoch
    )
    if state is not None:
        _restore(state, model, optimizer, sparsifier, user_hooks, steps_per_epoch)

    augment = config.augment if config.augment is not None else config.dataset.startswith("cifar")
    loader = TensorLoader(
        data.x_train, data.y_train, config.batch_size, shuffle=True, augment=augment, seed=config.seed
    )
    bar = ProgressBar("train", config.epochs, start_epoch) if progress else None

    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16")
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    for epoch in range(start_epoch, config.epochs):
        loader.set_epoch(epoch)
        model.train()
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        losses = torch.empty(steps_per_epoch, device=device)  # read once, at the end of the epoch
        for i, (xb, yb) in enumerate(loader):
            for hook in hooks:
                hook.before_iteration()
            with autocast:
                logits = model(xb.contiguous(memory_format=memory_format))
                loss = F.cross_entropy(logits, yb)
            losses[i] = loss.detach()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            for hook in hooks:
                hook.after_backward()
            if config.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            lr_schedule.step()
            loss_sum += loss.detach() * len(yb)
            correct += (logits.detach().argmax(1) == yb).sum()
        message = divergence(losses, epoch, steps_per_epoch)
        if message is not None:
            raise TrainingDiverged(message)
        metrics: dict[str, float] = {"epoch": epoch + 1}
        for hook in hooks:
            hook.end_epoch()
            metrics.update(hook.metrics())
        if device.type == "cuda":
            torch.cuda.synchronize()
        metrics["train_time"] = time.perf_counter() - t0
        n = len(data.x_train)
        metrics["train_loss"] = loss_sum.item() / n
        metrics["train_acc"] = correct.item() / n
        metrics["val_acc"], metrics["val_loss"] = evaluate(model, data.x_val, data.y_val, config.eval_batch_size)
        metrics["test_acc"], metrics["test_loss"] = evaluate(model, data.x_test, data.y_test, config.eval_batch_size)
        metrics["lr"] = optimizer.param_groups[0]["lr"]
        metrics["epoch_time"] = time.perf_counter() - t0
        history.append(metrics)
        ckpt = None
        if checkpoint_dir is not None:
            run_state = _run_state(config, epoch + 1, model, optimizer, sparsifier, user_hooks, history)
            ckpt = save_atomic(run_state, Path(checkpoint_dir) / CHECKPOINT_NAME)
        for callback in callbacks:
            callback(metrics, ckpt)
        if bar is not None:
            sparsity = f" sparsity={metrics['sparsity']:.4f}" if "sparsity" in metrics else ""
            bar.advance(f"val_acc={metrics['val_acc']:.4f}{sparsity}")
    if bar is not None:
        bar.close()

    final_model = sparsifier.finalize() if sparsifier is not None else model
    return TrainResult(final_model.cpu(), config, data.num_classes, data.in_channels, history)
