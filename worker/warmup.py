"""Pay a fresh worker's one-off costs when it starts, in a background thread, instead of in its first job.

Measured in a fresh process (CPU, one thread; `bench/README.md`): the first `torch.optim.Adam()` costs
1.6-1.9 s (it imports `torch._dynamo`; the next one 0.3 ms), the first digits load 1.1-1.2 s (scikit-learn's
imports; the next one ~40 ms). A worker used to pay both inside its first training job.

Why a thread and not before the worker consumes: inline, every worker start (and so the first claim after
it) would wait ~3 s even when its first job needs neither. In a daemon thread the first claim is not delayed;
a job that needs a module the thread is still importing waits on Python's per-module import lock for the
rest of that import only, never for a second one. Nothing here reads or advances a random generator, and no
tensor it makes is kept, so jobs' outputs do not change.
"""

from __future__ import annotations

import logging
import threading
import time

import torch

from synthjobs.settings import Settings

log = logging.getLogger(__name__)


def warm_up() -> dict[str, float]:
    """Run the one-off imports now; the seconds each took."""
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([weight])
    weight.grad = torch.zeros(1)
    optimizer.step()
    seconds["adam"] = time.perf_counter() - started
    started = time.perf_counter()
    from training.data import load_digits_dataset  # noqa: PLC0415 - the point is to import it here

    load_digits_dataset()
    seconds["digits"] = time.perf_counter() - started
    return seconds


def start_warm_up(settings: Settings) -> threading.Thread | None:
    """Start `warm_up` in a daemon thread (None when `SYNTHJOBS_WORKER_WARM_UP` is off)."""
    if not settings.worker_warm_up:
        return None

    def run() -> None:
        try:
            seconds = warm_up()
        except Exception:  # noqa: BLE001 - a failed warm-up only leaves the cost to the first job
            log.warning("worker warm-up failed", exc_info=True)
            return
        log.info("worker warm-up done: %s", ", ".join(f"{k} {v:.2f}s" for k, v in seconds.items()))

    thread = threading.Thread(target=run, name="warm-up", daemon=True)
    thread.start()
    return thread
