"""Progress on stderr when it is not a terminal (a file or a pipe, as under pytest): plain, throttled lines."""

from __future__ import annotations

import time

from tuneprune.output import progress
from tuneprune.output.progress import LiveStatus, ProgressBar, say


def lines(capsys) -> list[str]:
    captured = capsys.readouterr()
    assert captured.out == ""  # results on stdout stay clean
    return captured.err.splitlines()


def test_say_prints_one_line_as_given(capsys):
    message = "[bold]starting Ray[/bold] " + "x" * 300
    say(message)
    assert lines(capsys) == [message]  # no markup, no wrapping


def test_a_live_status_prints_at_start_when_forced_and_at_close(capsys):
    state = {"n": 0}
    status = LiveStatus(render=lambda: f"table {state['n']}", line=lambda: f"done {state['n']}")
    state["n"] = 1
    status.update()  # within PERIOD_S of the first line: throttled
    state["n"] = 2
    status.update(force=True)
    state["n"] = 3
    status.close()
    assert lines(capsys) == ["done 0", "done 2", "done 3"]


def test_a_progress_bar_prints_its_first_and_last_step(capsys):
    bar = ProgressBar("trials", total=3)
    for key in ("g0-000", "g0-001", "g0-002"):
        bar.advance(key)
    bar.close()
    assert [line.rsplit(" (", 1)[0] for line in lines(capsys)] == ["trials 0/3", "trials 3/3 g0-002"]


def test_a_progress_bar_closed_early_prints_where_it_stopped(capsys):
    bar = ProgressBar("generations", total=5, done=1)
    bar.advance("gen 2")
    bar.close()
    printed = lines(capsys)
    assert [line.rsplit(" (", 1)[0] for line in printed] == ["generations 1/5", "generations 2/5 gen 2"]
    assert printed[-1].endswith(" s)")


def test_a_slow_step_is_never_silent(capsys, monkeypatch):
    monkeypatch.setattr(progress, "PERIOD_S", 0.05)
    bar = ProgressBar("trials", total=2)
    time.sleep(0.5)  # no advance: the heartbeat prints
    bar.close()
    printed = lines(capsys)
    assert len(printed) >= 4
    assert all(line.startswith("trials 0/2") for line in printed)
    time.sleep(0.2)
    assert lines(capsys) == []  # closed: the heartbeat stopped


def test_lines_are_throttled_within_a_period(capsys):
    bar = ProgressBar("trials", total=10)
    for i in range(5):
        bar.advance(f"t{i}")
    assert len(lines(capsys)) == 1  # the first line only
    bar.close()
