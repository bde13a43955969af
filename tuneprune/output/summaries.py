"""What a search, an evolution or a stochastic pruning wrote, as JSON: one serialiser for every summary dataclass."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any


def summary_json(summary: Any) -> dict[str, Any]:
    """A summary dataclass as a JSON-ready dict (paths and other non-JSON values as strings)."""
    return json.loads(json.dumps(asdict(summary), default=str))


def write_summary(summary: Any, path: str | Path) -> Path:
    """Write ``summary`` (a dataclass) to ``path`` as indented JSON."""
    path = Path(path)
    path.write_text(json.dumps(summary_json(summary), indent=2))
    return path
