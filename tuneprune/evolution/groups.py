"""Layer groups with a pruning rate each (formulas §5: "may add per-layer rates as extra variables")."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn as nn

from tuneprune.shared.config import ConfigError


def group_layers(layers: Sequence[tuple[str, nn.Module]], groups: dict[str, list[str]]) -> list[list[int]]:
    """Indices into ``layers`` per group of ``groups`` (group name -> module-name prefixes).

    Every layer must fall into exactly one group and every group must match a layer;
    no groups means one group of all layers.
    """
    if not groups:
        return [list(range(len(layers)))]
    members: dict[str, list[int]] = {name: [] for name in groups}
    for i, (layer, _) in enumerate(layers):
        hits = [name for name, prefixes in groups.items() if any(f"{layer}.".startswith(f"{p}.") for p in prefixes)]
        if len(hits) != 1:
            found = "no group" if not hits else "groups " + ", ".join(hits)
            raise ConfigError(f"variables.groups: layer {layer!r} is in {found}; every pruned layer needs exactly one")
        members[hits[0]].append(i)
    for name, member in members.items():
        if not member:
            raise ConfigError(f"variables.groups.{name}: matches no pruned layer")
    return list(members.values())
