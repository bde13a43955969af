"""parent_run: the parent run of a search or an evolution is never left RUNNING."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tuneprune.tracking import parent_run


def test_a_completed_block_ends_the_parent_finished(tracker):
    with parent_run(tracker, "demo", "search", resume=False) as run_id:
        assert tracker.client.get_run(run_id).info.status == "RUNNING"
    run = tracker.client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert "error" not in run.data.tags


def test_an_exception_ends_the_parent_failed_with_the_error_tagged_and_is_reraised(tracker):
    with pytest.raises(ValueError, match="bad space"), parent_run(tracker, "demo", "search", resume=False) as run_id:
        raise ValueError("bad space")
    run = tracker.client.get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["error"] == "ValueError: bad space"


def test_ctrl_c_ends_the_parent_killed(tracker):
    with pytest.raises(KeyboardInterrupt), parent_run(tracker, "demo", "search", resume=False) as run_id:
        raise KeyboardInterrupt
    assert tracker.client.get_run(run_id).info.status == "KILLED"


def test_resume_reopens_the_same_parent(tracker):
    with parent_run(tracker, "demo", "search", resume=False) as first:
        pass
    with parent_run(tracker, "demo", "search", resume=True) as second:
        assert tracker.client.get_run(second).info.status == "RUNNING"
    assert second == first
    assert tracker.client.get_run(first).info.status == "FINISHED"


def terminate_self() -> None:
    """Send this process SIGTERM and give its handler time to run (between two bytecodes of the loop)."""
    os.kill(os.getpid(), signal.SIGTERM)
    for _ in range(50):
        time.sleep(0.01)


def test_kill_ends_the_parent_killed_and_puts_the_signal_handler_back(tracker):
    """``kill`` (SIGTERM) ends the parent KILLED, as Ctrl-C does: by default it ended the process with its parent RUNNING.
    A recording handler stands in for the default here, which would end pytest."""
    received: list[int] = []

    def record(signum: int, frame: object) -> None:
        received.append(signum)

    previous = signal.signal(signal.SIGTERM, record)
    try:
        with pytest.raises(KeyboardInterrupt), parent_run(tracker, "demo", "search", resume=False) as run_id:
            terminate_self()
        assert signal.getsignal(signal.SIGTERM) is record
    finally:
        signal.signal(signal.SIGTERM, previous)
    run = tracker.client.get_run(run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags["error"] == "KeyboardInterrupt: terminated (SIGTERM)"
    assert received == []
