"""One intra-op thread for the elementwise bookkeeping of a pack on the CPU.

The masks, the thresholded weights and the SGD update of a pack are memory-bound passes
over ``[K, N]`` tensors, large enough for torch to split them over its thread pool. On a
CPU whose cores are busy each such split waits for a core (measured on 2 busy cores: 3.6x
slower than one thread), the round trip the Sparsifier avoids with NumPy kernels
(:mod:`tuneprune.sparsity.kernels`). Convolutions keep all threads.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def single_threaded(device: torch.device) -> Iterator[None]:
    """Run the block on one intra-op thread when ``device`` is the CPU; elsewhere change nothing."""
    if device.type != "cpu":
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
