"""The worker's Celery app: `celery -A worker.celery_app worker` (or `synthjobs worker`).

Tasks run in the solo pool by default: one job at a time per process, no fork after CUDA is initialised.
Run more processes (or machines) for more parallelism.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from celery.signals import (
    setup_logging,
    worker_process_init,
    worker_ready,
    worker_shutdown,
    worker_shutting_down,
)

from synthjobs.broker.queue import celery_config
from synthjobs.logs import configure_logging, secrets_of
from synthjobs.plugins import load_plugins
from synthjobs.settings import get_settings

log = logging.getLogger(__name__)

load_plugins()  # before the config (task routes) and worker.tasks (one task per plugin job kind)
app = Celery("synthjobs-worker", include=["worker.tasks"])
app.conf.update(celery_config(get_settings()))


@setup_logging.connect
def _setup_logging(loglevel: int | str | None = None, **_: Any) -> None:
    """JSON lines with job id, task id and attempt when not on a terminal; secrets redacted."""
    configure_logging(loglevel or "INFO", secrets=secrets_of(get_settings()))


@worker_process_init.connect
def _init_process(**_: Any) -> None:
    from worker.runtime import configure_torch

    configure_torch(get_settings())


@worker_shutting_down.connect
def _shutting_down(**_: Any) -> None:
    from worker.runtime import SHUTTING_DOWN

    log.info("shutdown requested: running jobs will checkpoint and be handed back")
    SHUTTING_DOWN.set()


@worker_shutdown.connect
def _drain_handoff(**_: Any) -> None:
    """The last shard's tail (its upload and its DONE) ends before the process does (`worker.handoff`)."""
    from worker.handoff import HANDOFF

    if not HANDOFF.drain(timeout=get_settings().lease_seconds):
        log.warning("a shard's tail was still running at exit; the reconciler requeues it at lease expiry")


@worker_ready.connect
def _ready(**_: Any) -> None:
    from worker.runtime import configure_torch, start_reconciler
    from worker.warmup import start_warm_up

    settings = get_settings()
    configure_torch(settings)
    start_warm_up(settings)  # off the claim path: a daemon thread (worker.warmup says why)
    start_reconciler(settings, app)
    log.info("synthjobs worker ready")
