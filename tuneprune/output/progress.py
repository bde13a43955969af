"""What a long command is doing, on stderr: live rich displays in a terminal, plain periodic lines otherwise.

Everything goes to stderr, so a command's results on stdout (tables, ``--json``) stay clean. In a terminal a display
redraws in place; when stderr is a file or a pipe it prints one line at most every :data:`PERIOD_S` seconds (and
always the last one), so a log never goes quiet for long and never fills with redraws.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

PERIOD_S = 5.0


@lru_cache(maxsize=1)
def console() -> Console:
    """The stderr console every display and :func:`say` share."""
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def say(message: str) -> None:
    """One line about what the command does next, e.g. ``starting Ray...``."""
    console().print(message, markup=False, soft_wrap=True)


class _PeriodicLines:
    """Prints ``text()`` when ``PERIOD_S`` seconds passed since the last line, or when forced (thread-safe)."""

    def __init__(self, text: Callable[[], str]) -> None:
        self._text = text
        self._last = float("-inf")
        self._lock = threading.Lock()

    def emit(self, force: bool = False) -> None:
        with self._lock:
            now = time.monotonic()
            if force or now - self._last >= PERIOD_S:
                say(self._text())
                self._last = now

    def heartbeat(self) -> threading.Event:
        """Emits every ``PERIOD_S`` seconds until the returned event is set, so a slow step is never silent."""
        stopped = threading.Event()

        def beat() -> None:
            while not stopped.wait(PERIOD_S):
                self.emit()

        threading.Thread(target=beat, daemon=True).start()
        return stopped


class LiveStatus:
    """``render()`` redrawn in place in a terminal; elsewhere ``line()`` every ``PERIOD_S`` seconds. Call :meth:`update`
    whenever something changed (it is throttled), :meth:`close` at the end (prints the final state in either mode)."""

    def __init__(self, render: Callable[[], RenderableType], line: Callable[[], str]) -> None:
        self._live = None
        self._lines = _PeriodicLines(line)
        if console().is_terminal:
            from rich.live import Live

            self._live = Live(console=console(), refresh_per_second=2, get_renderable=render)
            self._live.start()
        else:
            self._lines.emit(force=True)

    def update(self, force: bool = False) -> None:
        if self._live is not None:
            self._live.refresh()
        else:
            self._lines.emit(force)

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
        else:
            self._lines.emit(force=True)


class ProgressBar:
    """``label [bar] done/total eta status``; :meth:`advance` moves one step and sets the status."""

    def __init__(self, label: str, total: int, done: int = 0) -> None:
        self.label, self.total, self.done = label, total, done
        self._info = ""
        self._started = time.monotonic()
        self._progress = None
        if console().is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            columns = (BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"))
            self._progress = Progress(TextColumn(f"[bold]{label}"), *columns, console=console())
            self._progress.start()
            self._task = self._progress.add_task(label, total=total, completed=done, info="")
        else:
            self._lines = _PeriodicLines(self._text)
            self._lines.emit(force=True)
            self._heartbeat = self._lines.heartbeat()

    def _text(self) -> str:
        parts = (f"{self.label} {self.done}/{self.total}", self._info, f"({time.monotonic() - self._started:.0f} s)")
        return " ".join(part for part in parts if part)

    def advance(self, info: str) -> None:
        self.done += 1
        self._info = info
        if self._progress is not None:
            self._progress.update(self._task, advance=1, info=info)
        else:
            self._lines.emit(force=self.done >= self.total)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            return
        self._heartbeat.set()
        if self.done < self.total:  # else the last advance printed the final line
            self._lines.emit(force=True)
