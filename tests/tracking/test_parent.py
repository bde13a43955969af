"""parent_run: the parent run of a search or an evolution is never left RUNNING."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tuneprune.cluster.join import interrupt_on_sigterm
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


def test_kill_ends_the_parent_killed(tracker):
    """``kill`` (SIGTERM) ends the parent KILLED, as Ctrl-C does, under the handler every command installs: by default
    it ended the process with its parent RUNNING."""
    previous = signal.getsignal(signal.SIGTERM)
    try:
        interrupt_on_sigterm()
        with pytest.raises(KeyboardInterrupt), parent_run(tracker, "demo", "search", resume=False) as run_id:
            terminate_self()
    finally:
        signal.signal(signal.SIGTERM, previous)
    run = tracker.client.get_run(run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags["error"] == "KeyboardInterrupt: SIGTERM"
