"""Elementwise kernels of the per-iteration mask update, writing into preallocated buffers.

On the CPU they run as numpy ufuncs on the tensors' own memory: single-threaded SIMD
loops without a thread-pool round trip per call. That round trip dominates the many
small per-layer operations of the hot loop (SPEC 1.4) and, on a machine whose cores are
busy, can cost milliseconds per call. On an accelerator they are the torch operations
(no host sync).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

_NUMPY_DTYPES = (torch.bool, torch.float16, torch.float32, torch.float64)


def on_numpy(*tensors: torch.Tensor) -> bool:
    """Whether numpy can work on these tensors' memory (CPU, a dtype numpy has)."""
    return all(t.device.type == "cpu" and t.dtype in _NUMPY_DTYPES for t in tensors)


def _scalar(value: torch.Tensor | float) -> float:
    return float(value)  # a CPU tensor: no device sync


def abs_into(source: torch.Tensor, out: torch.Tensor) -> None:
    """``out = |source|`` (``out`` flat, ``source`` any shape with as many elements)."""
    source = source.detach().reshape(-1)
    if on_numpy(source, out):
        np.abs(source.numpy(), out=out.numpy())
    else:
        torch.abs(source, out=out)


def copy_into(source: torch.Tensor, out: torch.Tensor) -> None:
    if on_numpy(source, out):
        np.copyto(out.numpy(), source.numpy())
    else:
        out.copy_(source)


def greater_into(values: torch.Tensor, threshold: torch.Tensor, out: torch.Tensor) -> None:
    """``out = values > threshold``."""
    if on_numpy(values, out):
        np.greater(values.numpy(), _scalar(threshold), out=out.numpy())
    else:
        torch.gt(values, threshold, out=out)


def less_into(values: torch.Tensor, threshold: torch.Tensor, out: torch.Tensor) -> None:
    """``out = values < threshold``."""
    if on_numpy(values, out):
        np.less(values.numpy(), _scalar(threshold), out=out.numpy())
    else:
        torch.lt(values, threshold, out=out)


def and_into(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor) -> None:
    """``out = a & b`` for boolean tensors."""
    if on_numpy(a, b, out):
        np.logical_and(a.numpy(), b.numpy(), out=out.numpy())
    else:
        torch.logical_and(a, b, out=out)


def segment_counts(flat: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
    """Number of True entries in each consecutive segment of a flat boolean tensor (on its device)."""
    if on_numpy(flat):
        array, counts, start = flat.numpy(), [], 0
        for size in sizes:
            counts.append(np.count_nonzero(array[start : start + size]))
            start += size
        return torch.tensor(counts)
    return torch.stack([segment.sum() for segment in flat.split(list(sizes))])
