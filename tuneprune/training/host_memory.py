"""CPU training keeps the memory a step frees for the next step (docs/performance.md, "CPU memory").

Every training step frees its activations and gradients and allocates the same sizes
again at the next step. glibc's ``malloc`` gives the free top of its heap back to the
system once it exceeds ``M_TRIM_THRESHOLD``, and serves blocks above ``M_MMAP_THRESHOLD``
(raised on the fly, at most 32 MiB) from mappings of their own, unmapped when freed; in
both cases the next step touches fresh pages, each a page fault and a page of zeros
(ResNet-20x2, batch 128, on the 2-core EPYC: some 50,000 faults and 10-15% of the step).
:func:`keep_freed_memory` raises both thresholds to their largest value, so that freed
blocks stay in the heap for reuse: a process then holds the memory of its peak until it
ends, as PyTorch's CUDA allocator holds device memory. Nothing changes where the C library
is not glibc, or where the user set the allocator's thresholds (``MALLOC_TRIM_THRESHOLD_``,
``MALLOC_MMAP_THRESHOLD_``, ``GLIBC_TUNABLES``).
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform

M_TRIM_THRESHOLD = -1  # mallopt parameters, <malloc.h>
M_MMAP_THRESHOLD = -3
LARGEST = 2**31 - 1  # mallopt takes an int
USER_SETTINGS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES")


@functools.cache
def keep_freed_memory() -> bool:
    """Keep freed heap memory in this process (once per process); whether the thresholds were set."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if any(name in os.environ for name in USER_SETTINGS):
        return False
    libc = ctypes.CDLL(None)  # the C library this process runs on
    return bool(libc.mallopt(M_MMAP_THRESHOLD, LARGEST)) and bool(libc.mallopt(M_TRIM_THRESHOLD, LARGEST))
