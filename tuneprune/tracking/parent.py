"""The parent run of a search or an evolution, never left RUNNING."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tuneprune.tracking.runs import RunTracker


@contextmanager
def parent_run(tracker: RunTracker, name: str, kind: str, *, resume: bool) -> Iterator[str]:
    """Start (or, with ``resume``, reopen) the parent run ``name`` of ``kind`` and yield its id.

    It ends FINISHED when the block completes, KILLED on Ctrl-C and FAILED on any other
    exception (the error tagged, the exception re-raised).
    """
    parent_id = tracker.start_parent(name, kind, resume=resume)
    try:
        yield parent_id
    except BaseException as err:
        tracker.finish(
            parent_id, "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED", f"{type(err).__name__}: {err}"
        )
        raise
    tracker.finish(parent_id, "FINISHED")
