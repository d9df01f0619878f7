"""Per-process runtime choices: torch threads and the compute device, each made once."""

from __future__ import annotations

import logging
import threading
from functools import lru_cache

import torch
from celery import Celery

from synthjobs.maintenance.reconcile import reconcile
from synthjobs.settings import Settings

log = logging.getLogger(__name__)
_configured = False

# Set when the worker was told to shut down (SIGTERM): running jobs checkpoint and hand themselves back.
SHUTTING_DOWN = threading.Event()


def configure_torch(settings: Settings) -> None:
    """Set torch's intra-op threads from settings (once per process)."""
    global _configured
    if _configured:
        return
    threads = settings.resolved_torch_threads()
    torch.set_num_threads(threads)
    _configured = True
    log.info("torch threads: %d, device: %s", threads, select_device(settings.device))


@lru_cache
def select_device(requested: str) -> torch.device:
    """The device jobs run on: CUDA when present and asked for (`auto`), else CPU."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"SYNTHJOBS_DEVICE={requested} but CUDA is not available")
    return device


def start_reconciler(settings: Settings, app: Celery) -> threading.Thread | None:
    """Run the reconciler every `reconcile_interval` seconds in a daemon thread of this worker.

    Every worker runs one, so a deployment needs no extra process for it; passes are safe to overlap.
    """
    if settings.reconcile_interval <= 0:
        return None

    def loop() -> None:
        stop = threading.Event()
        while not stop.wait(settings.reconcile_interval):
            try:
                reconcile(settings, app)
            except Exception:  # noqa: BLE001 - the next pass tries again
                log.warning("reconciler pass failed", exc_info=True)

    thread = threading.Thread(target=loop, name="reconciler", daemon=True)
    thread.start()
    return thread
