"""A rich progress bar over epochs or generations, with a status text after the bar."""

from __future__ import annotations


class ProgressBar:
    """``label [bar] done/total eta status``; :meth:`advance` moves one step and sets the status."""

    def __init__(self, label: str, total: int, done: int = 0) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}")
        )
        self._progress.start()
        self._task = self._progress.add_task(label, total=total, completed=done, info="")

    def advance(self, info: str) -> None:
        self._progress.update(self._task, advance=1, info=info)

    def close(self) -> None:
        self._progress.stop()
