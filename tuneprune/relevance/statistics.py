"""Per-channel statistics of a tensor whose first dimension is the channel (formulas §6).

The same six statistics the seed compared serve both scores: of a channel's mean
relevance map ``(C, H, W)`` and of a convolution's filters ``(C, C_in, k, k)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

STATISTICS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "mean": lambda flat: flat.mean(1),
    "mean_abs": lambda flat: flat.abs().mean(1),
    "max": lambda flat: flat.amax(1),
    "max_abs": lambda flat: flat.abs().amax(1),
    "min": lambda flat: flat.amin(1),
    "min_abs": lambda flat: flat.abs().amin(1),
}


def channel_statistic(values: torch.Tensor, statistic: str) -> torch.Tensor:
    """``statistic`` (a key of :data:`STATISTICS`) of every channel: shape ``(C,)``."""
    return STATISTICS[statistic](values.detach().flatten(1).float())
