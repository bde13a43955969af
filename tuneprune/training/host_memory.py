"""CPU training keeps the memory a step frees for the next step (why and at what price: docs/performance.md, "CPU memory").

:func:`keep_freed_memory` raises glibc's ``M_TRIM_THRESHOLD`` and ``M_MMAP_THRESHOLD`` to their
largest value, so that the blocks a step frees stay in the heap for the next step instead of
coming back as fresh pages (page faults). Nothing changes where the C library is not glibc, or
where the user set the allocator's thresholds (``MALLOC_TRIM_THRESHOLD_``,
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
