"""Exact quantiles per segment by one sort of all segments: the accelerator path of formulas §1.4 (formulas §10.1).

Magnitudes order like their IEEE bit patterns, so the int64 key ``segment << 31 | bits``
(float32 bits; float16/bfloat16 widen exactly; float64: two stable sorts) sorts every
segment at once; ``x_(r)`` of segment l is then entry ``start_l + r`` of the sorted buffer.
Static shapes, nothing read back to the host (why a sort: docs/performance.md).
"""

from __future__ import annotations

import torch

from tuneprune.sparsity.dispatch import device_scalar
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
