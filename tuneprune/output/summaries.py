"""What a search, an evolution, a relevance study or a stochastic pruning wrote: one serialiser for every summary
dataclass (JSON) and one for every table of rows (CSV)."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tuneprune.shared.files import replace_atomically


def summary_json(summary: Any) -> dict[str, Any]:
    """A summary dataclass as a JSON-ready dict (paths and other non-JSON values as strings)."""
    return json.loads(json.dumps(asdict(summary), default=str))


def write_summary(summary: Any, path: str | Path) -> Path:
    """Write ``summary`` (a dataclass) to ``path`` as indented JSON, replaced whole: joined drivers sharing a results
    directory write theirs at the same moment, and a reader never sees half of one."""
    document = json.dumps(summary_json(summary), indent=2).encode()
    return replace_atomically(path, lambda fh: fh.write(document))


def write_rows(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """A CSV with one column per key of the first row; lists are written as JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(rows[0]) if rows else []
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([json.dumps(row[c]) if isinstance(row[c], list) else row[c] for c in columns])
    return path
