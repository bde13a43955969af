"""Which implementation the per-iteration work of the sparse engine takes (formulas §1.4).

On CPU memory the NumPy path is the fastest (quickselect, SIMD ufuncs, ``count_nonzero``
per layer; reading a CPU value is no device sync). Elsewhere the accelerator path runs:
the radix select, one torch operation over the flat buffer, ``index_add_`` counts, with
no read back to the host. :func:`accelerator_path` routes CPU tensors to the accelerator
path, so that tests pin it and benchmarks count its operators on a machine without one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

_NUMPY_DTYPES = (torch.bool, torch.float16, torch.float32, torch.float64)
_numpy_on_cpu = [True]


def on_numpy(*tensors: torch.Tensor) -> bool:
    """Whether the NumPy path handles these tensors (CPU memory, a dtype NumPy has)."""
    return _numpy_on_cpu[-1] and all(t.device.type == "cpu" and t.dtype in _NUMPY_DTYPES for t in tensors)


@contextmanager
def accelerator_path() -> Iterator[None]:
    """Within this block CPU tensors take the accelerator path too."""
    _numpy_on_cpu.append(False)
    try:
        yield
    finally:
        _numpy_on_cpu.pop()
