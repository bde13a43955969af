"""Magnitude thresholds: the S-quantile of |w| over the network or per layer (formulas §1.4).

The value equals ``torch.quantile``'s (formulas §10.1): on the CPU by an in-place ``numpy``
partition of a scratch copy, layer after layer; on an accelerator by
:func:`~tuneprune.sparsity.selection.segmented_quantiles`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from tuneprune.sparsity.dispatch import on_numpy
from tuneprune.sparsity.segments import Segments
from tuneprune.sparsity.selection import segmented_quantiles


def _position(q: float, n: int) -> tuple[int, float]:
    """Lower order statistic and interpolation weight of quantile ``q`` of ``n`` values."""
    pos = q * (n - 1)
    lower = min(int(pos), n - 1)
    return lower, pos - lower


def _pairs_by_partition(values: np.ndarray, lowers: set[int]) -> dict[int, tuple[float, float]]:
    """Order statistics ``(x_(r), x_(r+1))`` for each ``r``; partitions ``values`` in place.

    Ranks are taken from the largest down, each partition working on the prefix left by
    the previous one; ``x_(r+1)`` is the minimum of the part above ``r`` in that prefix.
    """
    pairs = {}
    end = len(values)
    for r in sorted(lowers, reverse=True):
        head = values[:end]
        head.partition(r)
        upper = head[r + 1 :].min() if r + 1 < end else head[r]
        pairs[r] = (float(head[r]), float(upper))
        end = r + 1
    return pairs


def _partition_quantiles(array: np.ndarray, qs: Sequence[float], dtype: torch.dtype) -> list[torch.Tensor]:
    """Quantiles ``qs`` of a 1-D numpy array (partitioned in place) as 0-dim CPU tensors."""
    n = len(array)
    positions = {q: _position(q, n) for q in qs if q > 0}
    pairs = _pairs_by_partition(array, {lower for lower, _ in positions.values()}) if positions else {}
    result = []
    for q in qs:
        if q <= 0:
            result.append(torch.zeros((), dtype=dtype))
            continue
        lower, weight = positions[q]
        below, above = pairs[lower]
        result.append(torch.lerp(torch.tensor(below, dtype=dtype), torch.tensor(above, dtype=dtype), weight))
    return result


def magnitude_quantiles(values: torch.Tensor, qs: Sequence[float]) -> list[torch.Tensor]:
    """Quantiles ``qs`` of a 1-D tensor of magnitudes (>= 0) as 0-dim tensors on its device (formulas §1.4).

    Linear interpolation between neighbouring order statistics, like ``torch.quantile``;
    ``q <= 0`` gives 0 (nothing pruned). ``values`` is left untouched.
    """
    values = values.detach()
    if on_numpy(values):
        return _partition_quantiles(values.numpy().copy(), qs, values.dtype)
    segments = Segments([values.numel()], values.device)
    return [segmented_quantiles(values, segments, q)[0] for q in qs]


def global_threshold(tensors: Sequence[torch.Tensor], sparsity: float) -> torch.Tensor:
    """The ``sparsity``-quantile of ``|w|`` over all ``tensors`` together (formulas §1.4, Feather)."""
    return magnitude_quantiles(torch.cat([t.detach().reshape(-1).abs() for t in tensors]), [sparsity])[0]


def layer_thresholds(tensors: Sequence[torch.Tensor], sparsity: float) -> list[torch.Tensor]:
    """The ``sparsity``-quantile of ``|w|`` of each tensor on its own (formulas §1.4, layer-wise)."""
    return [magnitude_quantiles(t.detach().reshape(-1).abs(), [sparsity])[0] for t in tensors]


class FlatMagnitudes:
    """``|w|`` of the prunable weights in one preallocated flat buffer, segmented by layer.

    The hot loop of sparse training (formulas §1.4) reuses the buffers: one ``abs`` pass per
    iteration, no allocation of the magnitudes, no host sync. On the CPU the selection
    partitions a scratch copy so that the magnitudes stay in layer order for the masks.
    """

    def __init__(self, segments: Segments, dtype: torch.dtype) -> None:
        self.segments = segments
        self.flat = torch.empty(segments.total, dtype=dtype, device=segments.device)
        self._scratch: torch.Tensor | None = None

    def gather(self, weights: torch.Tensor) -> None:
        """``|w|`` of the flat weight buffer ``weights`` (in the segments' order)."""
        torch.abs(weights.detach(), out=self.flat)

    def _scratch_copy(self) -> np.ndarray:
        if self._scratch is None:
            self._scratch = torch.empty_like(self.flat)
        array = self._scratch.numpy()
        np.copyto(array, self.flat.numpy())
        return array

    def layer_quantiles(self, q: float | torch.Tensor, segments: Segments | None = None) -> torch.Tensor:
        """The ``q``-quantile of each layer's magnitudes, ``q`` one float or one per layer (a tensor).

        ``segments`` cuts the buffer otherwise than by layer (e.g. the rows of packed
        members, :class:`~tuneprune.sparsity.segments.RowSegments`); all in one selection.
        """
        segments = segments or self.segments
        if not on_numpy(self.flat):
            return segmented_quantiles(self.flat, segments, q)
        per_segment = isinstance(q, torch.Tensor) and q.dim() > 0
        qs = torch.as_tensor(q).tolist() if per_segment else [float(q)] * segments.count  # CPU memory: no sync
        array = self._scratch_copy()
        bounds = np.cumsum([0, *segments.sizes])
        return torch.stack(
            [
                _partition_quantiles(array[a:b], [q_l], self.flat.dtype)[0]
                for a, b, q_l in zip(bounds[:-1], bounds[1:], qs, strict=True)
            ]
        )
