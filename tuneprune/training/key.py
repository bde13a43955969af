"""Which trials can share a pack: the run-config fields every member must have in common."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tuneprune.training.config import RunConfig

# Each member's own run-config fields, in which the members of a pack may differ; they share all others (the same
# model, data, batch size and number of steps), so that their tensors stack.
OWN_FIELDS = {"augment", "seed", "lr", "momentum", "nesterov", "weight_decay", "lr_schedule", "grad_clip", "sparsity"}
SHARED_FIELDS = tuple(name for name in RunConfig.model_fields if name not in OWN_FIELDS)
# Of the sparse members: the same prunable layers and the same operator P_T.
SHARED_SPARSITY_FIELDS = ("operator_p", "min_size")


def pack_key(config: RunConfig) -> tuple[Any, ...]:
    """The values that must be equal for two trials to train in one pack."""
    shared = tuple(getattr(config, name) for name in SHARED_FIELDS)
    if config.sparsity is None:
        return shared
    return shared + tuple(getattr(config.sparsity, name) for name in SHARED_SPARSITY_FIELDS)


def check_packable(configs: Sequence[RunConfig]) -> None:
    """Raise ``ValueError`` naming the first field in which a member differs from member 0."""
    if not configs:
        raise ValueError("a pack needs at least one member")
    first = configs[0]
    first_sparse = next((c.sparsity for c in configs if c.sparsity is not None), None)
    for index, config in enumerate(configs[1:], start=1):
        for name in SHARED_FIELDS:
            if getattr(config, name) != getattr(first, name):
                raise ValueError(
                    f"{name}: member {index} has {getattr(config, name)!r}, member 0 {getattr(first, name)!r}; "
                    "members of a pack must share it"
                )
        if config.sparsity is None or first_sparse is None:
            continue
        for name in SHARED_SPARSITY_FIELDS:
            if getattr(config.sparsity, name) != getattr(first_sparse, name):
                raise ValueError(
                    f"sparsity.{name}: member {index} has {getattr(config.sparsity, name)!r}, "
                    f"another sparse member {getattr(first_sparse, name)!r}; sparse members of a pack must share it"
                )
