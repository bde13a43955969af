"""The threshold comparisons of the mask update, per layer or network-wide, into preallocated masks.

On the CPU they run as numpy ufuncs on the tensors' own memory (single-threaded SIMD
loops, about ten times faster than ``torch.gt`` with a 0-dim threshold on a busy
machine; reading a CPU threshold is no device sync). On an accelerator each is one torch
operation over the flat buffer, the per-layer thresholds spread by the segment ids.
"""

from __future__ import annotations

import numpy as np
import torch

from tuneprune.sparsity.dispatch import on_numpy
from tuneprune.sparsity.segments import Segments

_NUMPY = {"gt": np.greater, "lt": np.less}
_TORCH = {"gt": torch.gt, "lt": torch.lt}


def compare_into(op: str, values: torch.Tensor, thresholds: torch.Tensor, segments: Segments, out: torch.Tensor) -> None:
    """``out = values op T``, ``op`` ``gt`` or ``lt``; ``thresholds`` one 0-dim T or one T_l per segment."""
    if on_numpy(values, out):
        ufunc, array, result = _NUMPY[op], values.numpy(), out.numpy()
        if thresholds.dim() == 0:
            ufunc(array, thresholds.item(), out=result)
            return
        start = 0
        for size, threshold in zip(segments.sizes, thresholds.tolist(), strict=True):
            ufunc(array[start : start + size], threshold, out=result[start : start + size])
            start += size
        return
    _TORCH[op](values, thresholds if thresholds.dim() == 0 else segments.spread(thresholds), out=out)
