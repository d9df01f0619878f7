"""Celery tasks: thin shells that claim a job, run its pipeline and record the outcome in SQL.

A task takes only the job id. A failing job never kills the worker: every exception ends the job FAILED
with a readable reason, and the task itself returns normally so the message is acknowledged.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from typing import Any

from synthjobs import jobs
from synthjobs.db import session_scope
from synthjobs.errors import InvalidTransition, JobFailure, ModelNotFound, ObjectNotFound
from synthjobs.models import JobState
from synthjobs.queue import SAMPLE_TASK, TRAIN_TASK
from synthjobs.settings import get_settings
from synthjobs.storage import open_storage
from worker.celery_app import app
from worker.context import JobCancelled, JobContext
from worker.pipelines import sample as sample_pipeline
from worker.pipelines import train as train_pipeline
from worker.runtime import configure_torch, select_device

log = logging.getLogger(__name__)

Pipeline = Callable[[JobContext], dict[str, Any]]

# Failures the user can act on: their message is the job's error as it stands.
EXPECTED_FAILURES: tuple[type[BaseException], ...] = (JobFailure, ModelNotFound, ObjectNotFound, ValueError)


def worker_name() -> str:
    """Who holds a claimed job: host and pid, enough to find the process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def describe_failure(exc: BaseException) -> str:
    """The error text a user reads on a FAILED job."""
    if isinstance(exc, EXPECTED_FAILURES):
        return str(exc) or type(exc).__name__
    for expected in _training_failures():
        if isinstance(exc, expected):
            return str(exc) or type(exc).__name__
    return f"internal error: {type(exc).__name__}: {exc}"


def _training_failures() -> tuple[type[BaseException], ...]:
    from training.train import TrainingDiverged

    return (TrainingDiverged,)


def run_job(job_id: str, pipeline: Pipeline) -> None:
    """Claim `job_id`, run `pipeline` on it and record SUCCEEDED, FAILED or CANCELLED."""
    settings = get_settings()
    configure_torch(settings)
    url = settings.resolved_database_url()
    with session_scope(url) as session:
        if not jobs.claim_job(session, job_id, worker_name(), settings.visibility_timeout):
            log.info("job %s was not QUEUED; this delivery does nothing", job_id)
            return
        params = dict(jobs.get_job(session, job_id).params)
    ctx = JobContext(job_id, params, settings, open_storage(settings), select_device(settings.device))
    try:
        result = pipeline(ctx)
    except JobCancelled:
        _finish(url, job_id, JobState.CANCELLED)
    except Exception as exc:  # noqa: BLE001 - a failing job must never take the worker down
        log.exception("job %s failed", job_id)
        _finish(url, job_id, JobState.FAILED, error=describe_failure(exc))
    else:
        _finish(url, job_id, JobState.SUCCEEDED, result=result)


def _finish(url: str, job_id: str, state: JobState, **outcome: Any) -> None:
    try:
        with session_scope(url) as session:
            jobs.finish_job(session, job_id, state, **outcome)
    except InvalidTransition as exc:
        # Cancelled while the last step ran: the cancel stands.
        log.info("job %s not moved to %s: %s", job_id, state.value, exc)


@app.task(name=TRAIN_TASK, ignore_result=True)
def train_job(job_id: str) -> None:
    """Train a CVAE for a training job."""
    run_job(job_id, train_pipeline.run)


@app.task(name=SAMPLE_TASK, ignore_result=True)
def sample_job(job_id: str) -> None:
    """Generate labelled samples for a sampling job."""
    run_job(job_id, sample_pipeline.run)
