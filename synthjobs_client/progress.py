"""Job progress on a terminal (a bar) or in a log (a line per change)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


def progress_printer(stream: Any = None) -> Callable[[dict[str, Any]], None]:
    """A progress bar on a terminal; one line per change otherwise (logs, CI)."""
    stream = stream or sys.stderr
    tty = stream.isatty()
    last: list[Any] = [None]

    def show(job: dict[str, Any]) -> None:
        state = (job["state"], job["phase"], round(job["progress"], 2))
        if state == last[0]:
            return
        last[0] = state
        if tty:
            filled = int(30 * job["progress"])
            stream.write(
                f"\r[{'#' * filled}{'.' * (30 - filled)}] {job['progress']:4.0%} {job['phase'][:40]:40}"
            )
            if job["state"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
                stream.write("\n")
        else:
            stream.write(f"{job['state']} {job['progress']:.0%} {job['phase']}\n")
        stream.flush()

    return show
