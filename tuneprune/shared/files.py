"""Files replaced whole: written to a scratch file of their own, then renamed over the target."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO


def replace_atomically(path: str | Path, write: Callable[[IO[bytes]], object], *, sync: bool = False) -> Path:
    """Write ``path`` with ``write(fh)`` into a uniquely named scratch file beside it, then rename it over ``path``.

    A reader sees the previous file or the new one, never half of one; writers of the same
    file at the same moment (processes sharing a directory) each rename their own scratch
    file, and the last one stays. ``sync``: flushed to disk before the rename (a kill then
    leaves the previous file intact).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            if sync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
