"""Magnitude thresholds: the S-quantile of |w| over the network or per layer (formulas §1.4).

The value equals ``torch.quantile``'s (formulas §10.1): on the CPU by an in-place ``numpy``
partition of a scratch copy, layer after layer; on an accelerator by one sort of all
segments (:func:`segmented_quantiles`). Magnitudes order like their IEEE bit patterns, so
the int64 key ``segment << 31 | bits`` (float32 bits; float16/bfloat16 widen exactly;
float64: two stable sorts) sorts every segment at once; ``x_(r)`` of segment l is then
entry ``start_l + r`` of the sorted buffer. Static shapes, nothing read back to the host
(why a sort: docs/performance.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from tuneprune.sparsity.dispatch import device_scalar, on_numpy
from tuneprune.sparsity.segments import Segments

_LOW_31_BITS = (1 << 31) - 1


def _sorted_by_segment(values: torch.Tensor, segments: Segments) -> torch.Tensor:
    """``values`` sorted ascending within each segment, in float32 (float64 stays float64)."""
    exact = values if values.dtype == torch.float64 else values.float()
    if segments.ids is None:
        return exact.sort().values
    if exact.dtype == torch.float64:
        by_value = exact.sort(stable=True)
        return by_value.values[segments.ids[by_value.indices].sort(stable=True).indices]
    keys = (segments.ids << 31) | exact.view(torch.int32).long()
    return (keys.sort().values & _LOW_31_BITS).int().view(torch.float32)


def segmented_quantiles(values: torch.Tensor, segments: Segments, q: float | torch.Tensor) -> torch.Tensor:
    """The ``q[l]``-quantile of each segment of the flat non-negative ``values`` (formulas §1.4).

    Linear interpolation between the order statistics ``x_(r)`` and ``x_(r+1)`` at
    ``q * (n_l - 1)``, as ``torch.quantile`` does (positions in float64); ``q <= 0`` gives
    0 (nothing pruned). ``q`` is one value for every segment (a float, or a 0-dim tensor
    such as ``S_k`` on the accelerator path, formulas §10.6) or a tensor of one per segment.
    Returns one value per segment, in ``values``' dtype.
    """
    q = device_scalar(q, values.device).expand(segments.count)  # a float as a fill: no copy from the host
    last = segments.lengths - 1
    position = q.clamp(min=0.0) * last
    lower = position.long().minimum(last)
    ordered = _sorted_by_segment(values.detach(), segments)
    below = ordered[segments.starts + lower]
    above = ordered[segments.starts + (lower + 1).minimum(last)]
    quantile = torch.lerp(below, above, (position - lower).to(below.dtype))
    return torch.where(q > 0, quantile, 0.0).to(values.dtype)


def _partition_quantile(array: np.ndarray, q: float, dtype: torch.dtype) -> torch.Tensor:
    """The ``q``-quantile of a 1-D numpy array (partitioned in place) as a 0-dim CPU tensor; ``x_(r+1)`` is the
    minimum of the part above ``x_(r)``."""
    if q <= 0:
        return torch.zeros((), dtype=dtype)
    position = q * (len(array) - 1)
    r = min(int(position), len(array) - 1)
    array.partition(r)
    upper = array[r + 1 :].min() if r + 1 < len(array) else array[r]
    return torch.lerp(torch.tensor(float(array[r]), dtype=dtype), torch.tensor(float(upper), dtype=dtype), position - r)


def magnitude_quantiles(values: torch.Tensor, qs: Sequence[float]) -> list[torch.Tensor]:
    """Quantiles ``qs`` of a 1-D tensor of magnitudes (>= 0) as 0-dim tensors on its device (formulas §1.4).

    Linear interpolation between neighbouring order statistics, like ``torch.quantile``;
    ``q <= 0`` gives 0 (nothing pruned). ``values`` is left untouched.
    """
    values = values.detach()
    if on_numpy(values):
        array = values.numpy().copy()
        return [_partition_quantile(array, q, values.dtype) for q in qs]
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
        if self._scratch is None:
            self._scratch = torch.empty_like(self.flat)
        array = self._scratch.numpy()
        np.copyto(array, self.flat.numpy())
        return torch.stack(
            [
                _partition_quantile(array[piece], q_l, self.flat.dtype)
                for piece, q_l in zip(segments.slices, qs, strict=True)
            ]
        )
