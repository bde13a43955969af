"""The hook protocol through which the sparsity engine (or any user code) joins the loop."""

from __future__ import annotations

from typing import Any, Protocol


class TrainHook(Protocol):
    """Called by :func:`tuneprune.training.train` at fixed points of every iteration.

    ``before_iteration(step)`` runs before the forward pass of optimizer step ``step``;
    ``after_backward(step)`` after ``loss.backward()`` and before gradient clipping and
    the optimizer step; ``end_epoch(epoch)`` after the epoch's last optimizer step and
    before evaluation, returning metrics to log. ``state_dict``/``load_state_dict`` make
    the hook part of the checkpoint so a resumed run continues exactly.
    """

    def before_iteration(self, step: int) -> None: ...

    def after_backward(self, step: int) -> None: ...

    def end_epoch(self, epoch: int) -> dict[str, float]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...
