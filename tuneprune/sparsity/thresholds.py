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


def _partition_quantiles(array: np.ndarray, qs: Sequence[float], dtype: torch.dtype) -> list[torch.Tensor]:
    """Quantiles ``qs`` of a 1-D numpy array (partitioned in place) as 0-dim CPU tensors.

    Ranks are taken from the largest down, each partition working on the prefix left by
    the previous one; ``x_(r+1)`` is the minimum of the part above ``r`` in that prefix.
    """
    n = len(array)
    lowers = {q: min(int(q * (n - 1)), n - 1) for q in qs if q > 0}  # the lower order statistic of each q
    pairs = {}
    end = n
    for r in sorted(set(lowers.values()), reverse=True):
        head = array[:end]
        head.partition(r)
        upper = head[r + 1 :].min() if r + 1 < end else head[r]
        pairs[r] = (torch.tensor(float(head[r]), dtype=dtype), torch.tensor(float(upper), dtype=dtype))
        end = r + 1
    return [
        torch.lerp(*pairs[lowers[q]], q * (n - 1) - lowers[q]) if q > 0 else torch.zeros((), dtype=dtype) for q in qs
    ]


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
        bounds = np.cumsum([0, *segments.sizes])
        return torch.stack(
            [
                _partition_quantiles(array[a:b], [q_l], self.flat.dtype)[0]
                for a, b, q_l in zip(bounds[:-1], bounds[1:], qs, strict=True)
            ]
        )
