"""The IDX file format of MNIST and Fashion-MNIST (raw or gzip-compressed), read with every size checked.

An IDX file is a 4-byte magic number ``0x00 0x00 TYPE NDIM``, NDIM big-endian uint32
dimensions, then the values in C order (TYPE 0x08: unsigned bytes, ...). A file that
is shorter or longer than its header says, or whose magic number is wrong, raises a
one-line :class:`~tuneprune.shared.config.ConfigError` naming the file.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from tuneprune.shared.config import ConfigError

# IDX type byte -> numpy dtype (big-endian where it matters).
IDX_TYPES: dict[int, np.dtype[Any]] = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
             0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}  # fmt: skip


def read_idx(path: str | Path, ndim: int) -> np.ndarray:
    """The array an IDX file holds, which must have ``ndim`` dimensions (3 for images, 1 for labels)."""
    path = Path(path)
    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (EOFError, OSError, zlib.error) as err:
        raise ConfigError(f"{path}: unreadable or truncated ({err})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_TYPES:
        raise ConfigError(f"{path}: not an IDX file (magic number {data[:4].hex() or 'missing'}, expected 0000TTNN)")
    dims_count = data[3]
    if dims_count != ndim:
        raise ConfigError(f"{path}: IDX file of {dims_count} dimensions, expected {ndim}")
    header = 4 + 4 * dims_count
    if len(data) < header:
        raise ConfigError(f"{path}: truncated IDX header ({len(data)} bytes, expected at least {header})")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=dims_count, offset=4))
    dtype = IDX_TYPES[data[2]]
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "longer than its header says"
        raise ConfigError(f"{path}: {what} ({len(data)} bytes, expected {expected} for shape {shape})")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))
