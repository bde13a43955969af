"""The ``[K, N]`` matrix of K members' prunable weights as segments of its flat ``[K * N]`` view (formulas §1.4, §10.1).

Member k's row is one segment (a network-wide quantile) or its ``L`` layers (one per
layer), in row order, so the solo engine's selection, compares and counts
(:mod:`tuneprune.sparsity`) treat every member and layer in one call, without a copy
per member.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from tuneprune.sparsity.segments import Segments


class RowSegments:
    """Segments of the flat ``[K * N]`` view; ``split[k]`` says whether row k is split by layer.

    Values per (member, layer) come in as ``[K, L]`` tables (a whole row takes its first
    column), values per segment go out per weight.
    """

    def __init__(self, layer_sizes: Sequence[int], split: Sequence[bool], device: torch.device) -> None:
        n_layers, width = len(layer_sizes), sum(layer_sizes)
        sizes, columns = [], []
        for k, by_layer in enumerate(split):
            sizes += list(layer_sizes) if by_layer else [width]
            columns += [k * n_layers + layer for layer in range(n_layers if by_layer else 1)]
        self.segments = Segments(sizes, device)
        self.shape = (len(split), width)
        self.table_shape = (len(split), n_layers)
        self.whole_rows = not any(split)
        self._columns = torch.tensor(columns, device=device)

    def from_table(self, table: torch.Tensor) -> torch.Tensor:
        """The entry of ``[K, L]`` ``table`` (or ``[K, 1]``, the same for all layers) that belongs to each segment."""
        return table.expand(self.table_shape).reshape(-1).index_select(0, self._columns)

    def per_weight(self, per_segment: torch.Tensor) -> torch.Tensor:
        """``per_segment`` values as ``[K, 1]`` when every row is one segment, else ``[K, N]``."""
        if self.whole_rows:
            return per_segment.view(-1, 1)
        return self.segments.spread(per_segment).view(self.shape)
