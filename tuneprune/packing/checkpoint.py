"""Checkpoints of single pack members: one file per member, resumable in a pack of any composition.

A member's state (:meth:`PackedTrainer.member_state`) is a run state in the one format of
:mod:`tuneprune.training.checkpoint` (``RUN_STATE_FORMAT``, also a solo run's checkpoint),
saved atomically and loaded with ``weights_only=True``; ``resume=`` of
:class:`PackedTrainer` takes one state (or None) per member, checked by :func:`check_resume`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tuneprune.training.checkpoint import RUN_STATE_FORMAT, load_run_state, save_atomic
from tuneprune.training.config import RunConfig

MemberState = dict[str, Any]


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
        if state is not None and state["config"] != config.model_dump(mode="json"):
            raise ValueError(f"resume[{index}] is the state of another config than member {index}'s")
    if epochs[0] == 0:
        return None
    return [state for state in resume if state is not None]  # at an epoch > 0 every member has its state


def save_member(state: MemberState, path: str | Path) -> Path:
    """Write a member's ``state`` (:meth:`PackedTrainer.member_state`) to ``path`` atomically, as a run state."""
    return save_atomic({"format": RUN_STATE_FORMAT, **state}, path)


def load_member(path: str | Path) -> MemberState:
    """A run state (of a member or a solo run); ``ConfigError`` for a missing, corrupt or foreign file."""
    return load_run_state(path)
