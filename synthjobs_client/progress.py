"""Job progress: a Rich progress bar on a terminal, one plain line per change otherwise (logs, CI)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn, TimeElapsedColumn

TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")
Job = dict[str, Any]


class RichJobProgress:
    """A bar for one job, started at its first update and stopped when the job ends."""

    def __init__(self, stream: TextIO) -> None:
        self._progress = Progress(
            TextColumn("{task.fields[state]:<9}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=Console(file=stream),
        )
        self._task: TaskID | None = None

    def __call__(self, job: Job) -> None:
        if self._task is None:
            self._progress.start()
            self._task = self._progress.add_task(job["phase"], total=1.0, state=job["state"])
        self._progress.update(
            self._task, completed=job["progress"], description=job["phase"][:60], state=job["state"]
        )
        if job["state"] in TERMINAL:
            self._progress.stop()


def progress_printer(stream: TextIO | None = None) -> Callable[[Job], None]:
    """A progress bar on a terminal; one line per change of state, phase or percent otherwise."""
    stream = stream or sys.stderr
    if stream.isatty():
        return RichJobProgress(stream)
    last: list[Any] = [None]

    def show(job: Job) -> None:
        seen = (job["state"], job["phase"], round(job["progress"], 2))
        if seen != last[0]:
            last[0] = seen
            stream.write(f"{job['state']} {job['progress']:.0%} {job['phase']}\n")
            stream.flush()

    return show
