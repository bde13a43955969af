"""Layer groups with a pruning rate each (formulas §5: "may add per-layer rates as extra variables")."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn as nn

from tuneprune.shared.config import ConfigError


def _matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def group_layers(layers: Sequence[tuple[str, nn.Module]], groups: dict[str, list[str]]) -> list[list[int]]:
    """Indices into ``layers`` per group of ``groups`` (group name -> module-name prefixes).

    Every layer must fall into exactly one group and every group must match a layer;
    no groups means one group of all layers.
    """
    if not groups:
        return [list(range(len(layers)))]
    names = list(groups)
    members: list[list[int]] = [[] for _ in names]
    for i, (layer, _) in enumerate(layers):
        hits = [g for g, prefixes in enumerate(groups.values()) if any(_matches(layer, p) for p in prefixes)]
        if len(hits) != 1:
            found = "no group" if not hits else "groups " + ", ".join(names[g] for g in hits)
            raise ConfigError(f"variables.groups: layer {layer!r} is in {found}; every pruned layer needs exactly one")
        members[hits[0]].append(i)
    for name, member in zip(names, members, strict=True):
        if not member:
            raise ConfigError(f"variables.groups.{name}: matches no pruned layer")
    return members
