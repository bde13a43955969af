"""Atomic checkpoints and self-describing model files, loaded with ``weights_only=True``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn

from tuneprune.shared.config import ConfigError, trained_fields
from tuneprune.shared.files import replace_atomically

if TYPE_CHECKING:  # imported in load_model at run time
    from tuneprune.training.config import RunConfig

CHECKPOINT_NAME = "checkpoint.pt"
MODEL_NAME = "model.pt"
# A run's state at an epoch's end, the state of a pack member (a run is a pack of one): "config"
# (the run config as JSON values), "epoch", "history", "model" (the raw weights w by their
# plain parameter names), "momentum" (SGD buffers by the same names), "sparsity" (the
# engine's state of the run, None when dense), "hooks" (its hooks' states); a run's
# checkpoint adds "torch_rng". Plain values and CPU tensors, for weights_only loading.
RUN_STATE_FORMAT = "tuneprune-run-state-v1"
MODEL_FORMAT = "tuneprune-model-v1"


def save_atomic(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to ``path`` (:func:`~tuneprune.shared.files.replace_atomically`, synced): a kill during the save
    leaves the previous file intact, never a half-written one."""
    return replace_atomically(path, lambda fh: torch.save(obj, fh), sync=True)


def load_file(path: str | Path, expected: str | None = None, what: str = "") -> dict[str, Any]:
    """Load a tuneprune file (a ``what`` of format ``expected``) to the CPU; a missing, corrupt or foreign one
    names itself."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: checkpoint or model file not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for truncated or foreign files
        raise ConfigError(
            f"{path}: corrupt or unreadable checkpoint ({type(err).__name__}: {str(err).splitlines()[0][:120]})"
        ) from None
    if not isinstance(obj, dict):
        raise ConfigError(f"{path}: not a tuneprune checkpoint (expected a mapping, got {type(obj).__name__})")
    if expected is not None and obj.get("format") != expected:
        raise ConfigError(f"{path}: not a tuneprune {what} (no 'format: {expected}')")
    return obj


def save_model(
    model: nn.Module,
    config_dict: dict[str, Any],
    path: str | Path,
    num_classes: int,
    in_channels: int,
    metrics: dict[str, float] | None = None,
) -> Path:
    """Save a plain model's ``state_dict`` together with the run config that builds it."""
    payload = {
        "format": MODEL_FORMAT,
        "config": json.dumps(config_dict, default=str),
        "num_classes": num_classes,
        "in_channels": in_channels,
        "metrics": dict(metrics or {}),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    return save_atomic(payload, path)


def load_model(path: str | Path) -> tuple[nn.Module, RunConfig]:
    """Rebuild the model a :func:`save_model` file describes; returns ``(model, run_config)``."""
    from tuneprune.models import create_model
    from tuneprune.shared.config import validate
    from tuneprune.training.config import RunConfig

    obj = load_file(path, MODEL_FORMAT, "model file")
    # The file may hold a trial's spec (a run config plus keys of the application, such as
    # relevance:); the run config's own keys rebuild the model.
    config = validate(RunConfig, {k: v for k, v in json.loads(obj["config"]).items() if k in RunConfig.model_fields})
    model = create_model(config.model, int(obj["num_classes"]), int(obj["in_channels"]))
    try:
        model.load_state_dict(obj["state_dict"])
    except RuntimeError as err:
        raise ConfigError(f"{path}: weights do not match model {config.model!r} ({str(err).splitlines()[0]})") from None
    return model, config


MemberState = dict[str, Any]


def config_differences(config: RunConfig, state: MemberState) -> list[str]:
    """The run-config fields in which ``state`` (a run state) was saved with other values than ``config``'s, sorted;
    :data:`~tuneprune.shared.config.MACHINE_FIELDS` aside (a search's trial goes on on another driver's machine)."""
    saved, current = trained_fields(state["config"]), trained_fields(config.model_dump(mode="json"))
    return sorted(key for key in current.keys() | saved.keys() if current.get(key) != saved.get(key))


def check_resume(configs: Sequence[RunConfig], resume: Sequence[MemberState | None] | None) -> list[MemberState] | None:
    """The states to resume ``configs`` from, or None to start at epoch 0; ``ValueError`` where they do not fit.

    A member without a state is at epoch 0, and all members must be at one epoch: so
    either every member has a state of the same epoch or the pack starts afresh (states of
    epoch 0 hold nothing a fresh start lacks). A state must be of its member's config.
    """
    if resume is None:
        return None
    if len(resume) != len(configs):
        raise ValueError(f"resume has {len(resume)} entries for {len(configs)} members")
    epochs = [0 if state is None else int(state["epoch"]) for state in resume]
    if len(set(epochs)) > 1:
        raise ValueError(f"resumed members must be at one epoch, got epochs {epochs} (a member without a state at 0)")
    for index, (config, state) in enumerate(zip(configs, resume, strict=True)):
        if state is not None and (differing := config_differences(config, state)):
            raise ValueError(
                f"resume[{index}] is the state of another config than member {index}'s (differs in {', '.join(differing)})"
            )
    if epochs[0] == 0:
        return None
    return [state for state in resume if state is not None]  # at an epoch > 0 every member has its state


def save_member(state: MemberState, path: str | Path) -> Path:
    """Write a member's ``state`` (:meth:`PackedTrainer.member_state`) to ``path`` atomically, as a run state."""
    return save_atomic({"format": RUN_STATE_FORMAT, **state}, path)


def load_member(path: str | Path) -> MemberState:
    """A run state saved by :func:`save_member` (of a run or a pack member); ``ConfigError`` for a missing,
    corrupt or foreign file."""
    return load_file(path, RUN_STATE_FORMAT, "run checkpoint")
