"""Pay a fresh worker's one-off costs when it starts, in a background thread, instead of in its first job.

Measured in a fresh process (CPU, one thread; `bench/README.md`): the first `torch.optim.Adam()` costs
1.6-1.9 s (it imports `torch._dynamo`; the next one 0.3 ms), the first digits load 1.1-1.2 s (scikit-learn's
imports; the next one ~40 ms). A worker used to pay both inside its first training job, and with S3 storage
0.6 s more for the first storage client (the boto3 import) inside its first shard.

Why a thread and not before the worker consumes: inline, every worker start (and so the first claim after
it) would wait ~3 s even when its first job needs neither. In a daemon thread the first claim is not delayed;
a job that needs a module the thread is still importing waits on Python's per-module import lock for the
rest of that import only, never for a second one. Nothing here reads or advances a random generator, and no
tensor it makes is kept, so jobs' outputs do not change.

Not held back while a job runs: tried (each step waiting for a second without tasks), the finalizer of the
first job then paid the digits load itself, and a 10M-sample digits job on a fresh worker went from 0.82 to
0.65 of the bare loop on two vCPUs (bench/README.md).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import torch

from synthjobs.settings import Settings
from synthjobs.storage import open_storage

log = logging.getLogger(__name__)


def warm_up(settings: Settings | None = None) -> dict[str, float]:
    """Run the one-off imports now (and build the storage client, given settings); the seconds each took."""
    steps: list[tuple[str, Callable[[], object]]] = [("adam", _first_adam), ("digits", _first_digits)]
    if settings is not None:
        # S3: the shared client (`synthjobs.storage.s3`); a folder: nothing to pay. Every job needs it.
        steps.insert(0, ("storage", lambda: open_storage(settings)))
    seconds: dict[str, float] = {}
    for name, step in steps:
        started = time.perf_counter()
        step()
        seconds[name] = time.perf_counter() - started
    return seconds


def _first_adam() -> None:
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([weight])
    weight.grad = torch.zeros(1)
    optimizer.step()


def _first_digits() -> None:
    from training.data import load_digits_dataset  # noqa: PLC0415 - the point is to import it here

    load_digits_dataset()


def start_warm_up(settings: Settings) -> threading.Thread | None:
    """Start `warm_up` in a daemon thread (None when `SYNTHJOBS_WORKER_WARM_UP` is off)."""
    if not settings.worker_warm_up:
        return None

    def run() -> None:
        try:
            seconds = warm_up(settings)
        except Exception:  # noqa: BLE001 - a failed warm-up only leaves the cost to the first job
            log.warning("worker warm-up failed", exc_info=True)
            return
        log.info("worker warm-up done: %s", ", ".join(f"{k} {v:.2f}s" for k, v in seconds.items()))

    thread = threading.Thread(target=run, name="warm-up", daemon=True)
    thread.start()
    return thread
