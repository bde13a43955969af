"""Magnitude quantiles of K members at once (formulas §1.4, §4).

Quantiles are linearly interpolated between neighbouring order statistics exactly as
``torch.quantile`` (and the solo engine) defines them: for ``n`` values,
``pos = q (n - 1)``, ``T = lerp(v_floor(pos), v_ceil(pos), pos - floor(pos))``; 0 for
``q <= 0``. Two ways to find the order statistics, chosen by device:

- :class:`SortedSelection` (accelerators): one sort over the ``[K, N]`` magnitudes gives
  every member's network-wide order; a second, stable sort by layer turns it into K x L
  sorted segments, from which all per-layer quantiles are gathered at once;
- :class:`PartitionSelection` (CPU): numpy quickselect of only the needed ranks, per
  member and segment, several times faster there than a sort of the whole row.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def _position(q: float, n: int) -> tuple[int, int, float]:
    """Lower and upper rank and interpolation weight of quantile ``q`` of ``n`` values."""
    pos = max(q, 0.0) * (n - 1)
    lower = min(int(pos), n - 1)
    return lower, min(lower + 1, n - 1), pos - lower


def _interpolate(below, above, weights, positive, shape, like: torch.Tensor) -> torch.Tensor:
    def as_tensor(values, dtype):
        return torch.as_tensor(values, dtype=dtype, device=like.device).view(shape)

    lerped = torch.lerp(as_tensor(below, like.dtype), as_tensor(above, like.dtype), as_tensor(weights, like.dtype))
    return torch.where(as_tensor(positive, torch.bool), lerped, 0.0)


class SortedSelection:
    """Quantiles of the rows of ``magnitudes`` and of their segments (layers) from sorted copies."""

    def __init__(self, magnitudes: torch.Tensor, sizes: Sequence[int], segment_ids: torch.Tensor) -> None:
        self.values, self.order = magnitudes.sort(dim=1)
        self.sizes = list(sizes)
        self.offsets = [sum(self.sizes[:i]) for i in range(len(self.sizes))]
        self.segment_ids = segment_ids
        self._by_segment: torch.Tensor | None = None

    def _segment_sorted(self) -> torch.Tensor:
        """Rows regrouped so that each segment's values are contiguous and ascending (a stable sort by segment)."""
        if self._by_segment is None:
            regroup = self.segment_ids[self.order].sort(dim=1, stable=True).indices
            self._by_segment = self.values.gather(1, regroup)
        return self._by_segment

    def _gather(self, rows: torch.Tensor, offsets: Sequence[int], sizes: Sequence[int], qs) -> torch.Tensor:
        lowers, uppers, weights, positive = [], [], [], []
        for row_qs in qs:
            for offset, n, q in zip(offsets, sizes, row_qs):
                lower, upper, weight = _position(q, n)
                lowers.append(offset + lower)
                uppers.append(offset + upper)
                weights.append(weight)
                positive.append(q > 0)
        shape = (len(qs), len(offsets))
        index = torch.tensor([lowers, uppers], device=rows.device).view(2, *shape)
        below, above = rows.gather(1, index[0]), rows.gather(1, index[1])
        return _interpolate(below, above, weights, positive, shape, rows)

    def global_quantiles(self, qs: Sequence[float]) -> torch.Tensor:
        """``[K, 1]``: quantile ``qs[k]`` of all of row k."""
        return self._gather(self.values, [0], [self.values.shape[1]], [[q] for q in qs])

    def layer_quantiles(self, qs: Sequence[Sequence[float]]) -> torch.Tensor:
        """``[K, L]``: quantile ``qs[k][l]`` of segment l of row k."""
        return self._gather(self._segment_sorted(), self.offsets, self.sizes, qs)


class PartitionSelection:
    """The same quantiles as :class:`SortedSelection` by numpy partition of each needed row and segment (CPU)."""

    def __init__(self, magnitudes: torch.Tensor, sizes: Sequence[int]) -> None:
        self.array = magnitudes.numpy()
        self.sizes = list(sizes)
        self.offsets = [sum(self.sizes[:i]) for i in range(len(self.sizes))]
        self.like = magnitudes

    def _select(self, offsets: Sequence[int], sizes: Sequence[int], qs) -> torch.Tensor:
        below, above, weights, positive = [], [], [], []
        for row, row_qs in zip(self.array, qs):
            for offset, n, q in zip(offsets, sizes, row_qs):
                lower, upper, weight = _position(q, n)
                values = (0.0, 0.0)
                if q > 0:
                    part = np.partition(row[offset : offset + n], sorted({lower, upper}))
                    values = (part[lower], part[upper])
                below.append(values[0])
                above.append(values[1])
                weights.append(weight)
                positive.append(q > 0)
        shape = (len(qs), len(offsets))
        return _interpolate(below, above, weights, positive, shape, self.like)

    def global_quantiles(self, qs: Sequence[float]) -> torch.Tensor:
        return self._select([0], [self.array.shape[1]], [[q] for q in qs])

    def layer_quantiles(self, qs: Sequence[Sequence[float]]) -> torch.Tensor:
        return self._select(self.offsets, self.sizes, qs)


def select(
    magnitudes: torch.Tensor, sizes: Sequence[int], segment_ids: torch.Tensor
) -> SortedSelection | PartitionSelection:
    """The faster selection for the device of ``magnitudes``: partition on the CPU, one sort elsewhere."""
    if magnitudes.device.type == "cpu" and magnitudes.dtype in (torch.float32, torch.float64):
        return PartitionSelection(magnitudes, sizes)
    return SortedSelection(magnitudes, sizes, segment_ids)
