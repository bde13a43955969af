"""Where each search or evolution keeps its results, so follow-up commands find it by name from anywhere.

A search or an evolution records, when it starts, its results directory and its stores
(MLflow tracking URI, Optuna storage) under its name in one small JSON file: by default
``~/.tuneprune/index.json``, or the file ``TUNEPRUNE_INDEX`` names. ``report``,
``fit-alpha``, ``fit-scheduler`` and ``train --from-run`` look names and run ids up there.
Writes are atomic (a temporary file renamed over the index), and each read-modify-write
holds an exclusive lock (``index.json.lock`` beside it), so searches started at the same
moment each keep their entry; a later entry of the same name replaces the earlier one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import Any

from tuneprune.shared.files import replace_atomically

INDEX_ENV = "TUNEPRUNE_INDEX"


def index_path() -> Path:
    return Path(os.environ.get(INDEX_ENV) or Path.home() / ".tuneprune" / "index.json")


def load_index() -> dict[str, dict[str, Any]]:
    """Name -> entry; an unreadable or missing index is empty."""
    try:
        data = json.loads(index_path().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def index_results(
    name: str, kind: str, results_dir: Path, tracking_uri: str, parent_run_id: str, storage_url: str | None = None
) -> None:
    """Record where the search or evolution ``name`` keeps its results and runs."""
    path = index_path()
    entry = {
        "kind": kind,
        "results_dir": str(Path(results_dir).resolve()),
        "tracking_uri": tracking_uri,
        "storage_url": storage_url,
        "parent_run_id": parent_run_id,
    }
    with contextlib.suppress(OSError):  # a read-only home must not stop a search; lookups then say where to run from
        path.parent.mkdir(parents=True, exist_ok=True)
        # Read, add and replace under the lock: another process's entry written in between is kept.
        with open(path.with_name(f"{path.name}.lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            document = json.dumps({**load_index(), name: entry}, indent=2).encode()
            replace_atomically(path, lambda fh: fh.write(document))


def lookup(name_or_run_id: str) -> dict[str, Any] | None:
    """The entry of a name, or of the entry whose parent run id it is."""
    entries = load_index()
    if name_or_run_id in entries:
        return entries[name_or_run_id]
    return next((e for e in entries.values() if e.get("parent_run_id") == name_or_run_id), None)


def tracking_uris() -> list[str]:
    """Every tracking URI recorded, most recent entry first, without repeats."""
    return list(dict.fromkeys(e["tracking_uri"] for e in reversed(load_index().values()) if "tracking_uri" in e))
