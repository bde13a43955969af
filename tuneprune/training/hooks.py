"""The hook protocol through which the sparsity engine (or any user code) joins the loop."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch
import torch.nn as nn


class TrainHook(Protocol):
    """Called by :func:`tuneprune.training.train` at fixed points of every iteration.

    ``before_iteration()`` runs before the forward pass of each optimizer step (a hook
    that needs the step number counts them itself); ``after_backward()`` after
    ``loss.backward()`` and before gradient clipping and the optimizer step;
    ``end_epoch()`` after the epoch's last optimizer step and before evaluation;
    ``metrics()`` then returns the metrics to log for the epoch. ``state_dict``/
    ``load_state_dict`` make the hook part of the checkpoint so a resumed run continues
    exactly. A subclass inherits ``end_epoch`` doing nothing, no metrics and no state.
    """

    def before_iteration(self) -> None: ...

    def after_backward(self) -> None: ...

    def end_epoch(self) -> None:
        return None

    def metrics(self) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None


class FrozenWeights(TrainHook):
    """A :class:`TrainHook` holding chosen entries of parameters fixed during training.

    After every backward pass the gradient of each ``(tensor, frozen)`` pair is zeroed
    where ``frozen`` is True, so SGD's momentum and weight decay (proportional to zero
    weights or gradients) leave pruned entries exactly zero. ``eval_modules`` (e.g. the
    BatchNorm layers of a fine-tuned model) are kept in eval mode. A mask may cover only
    the leading dimensions of its tensor (one flag per output channel). It has no state: whoever
    builds the hook rebuilds its masks.
    """

    def __init__(
        self, frozen: Sequence[tuple[torch.Tensor, torch.Tensor]], eval_modules: Sequence[nn.Module] = ()
    ) -> None:
        self.frozen = [
            (tensor, mask.to(tensor.device, torch.bool).reshape(*mask.shape, *[1] * (tensor.ndim - mask.ndim)))
            for tensor, mask in frozen
        ]
        self.eval_modules = list(eval_modules)

    def before_iteration(self) -> None:
        for module in self.eval_modules:
            module.eval()

    def after_backward(self) -> None:
        for tensor, mask in self.frozen:
            if tensor.grad is not None:
                tensor.grad.masked_fill_(mask, 0.0)
