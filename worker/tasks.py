"""Celery tasks: thin shells that claim a job, run its pipeline and record the outcome in SQL.

A task takes only the job id. A failing job never kills the worker: every exception ends the job FAILED
with a readable reason and a stable `error_code`, and the task itself returns normally so the message is
acknowledged. Expected failures (bad data, NaN loss, a missing model) keep their own message; anything else
is an `internal_error` whose message is only a reference into the worker's log, where the traceback is:
exception text can carry server paths, hosts and other tenants' names.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import uuid
from collections.abc import Callable
from typing import Any

from celery import current_task
from celery.exceptions import Reject
from sqlalchemy.orm import Session

from synthjobs.broker.dispatch import dispatch_shards, publish_released
from synthjobs.broker.queue import (
    FINALIZE_TASK,
    SAMPLE_SHARD_TASK,
    TICK_TASK,
    TRAIN_TASK,
    enqueue_finalizer,
    enqueue_job,
    enqueue_shards,
)
from synthjobs.errors import (
    InvalidKey,
    InvalidRequest,
    InvalidTransition,
    JobFailure,
    ModelNotFound,
    ObjectNotFound,
)
from synthjobs.ledger import deletion, dispatch, jobs, shards
from synthjobs.ledger.retry import in_transaction, is_transient
from synthjobs.ledger.tables import JobShard, JobState
from synthjobs.logs import log_context
from synthjobs.maintenance import tick as schedule_tick
from synthjobs.rules import tenant_policy
from synthjobs.rules.kinds import is_sharded, kinds
from synthjobs.settings import Settings, get_settings
from synthjobs.storage import open_storage
from synthjobs.storage.base import Storage
from synthjobs.storage.retry import RetryingStorage
from worker.celery_app import app
from worker.context import HandBack, JobCancelled, JobContext, LeaseKeeper, LeaseLost
from worker.handoff import HANDOFF
from worker.pipelines import sample as sample_pipeline
from worker.pipelines import train as train_pipeline
from worker.runtime import SHUTTING_DOWN, configure_torch, select_device

log = logging.getLogger(__name__)

Pipeline = Callable[[JobContext], dict[str, Any]]


def worker_name() -> str:
    """Who holds a claimed job: host and pid, enough to find the process."""
    return f"{socket.gethostname()}:{os.getpid()}"


INTERNAL_ERROR = "internal_error"


def failure_code(exc: BaseException) -> str:
    """The stable, machine-readable code of a job's failure (`JobOut.error_code`).

    The failures listed are the ones a user can act on (bad data, a missing model or object, an impossible
    request, diverged training); anything else is INTERNAL_ERROR.
    """
    from training.checkpoint import CheckpointError
    from training.data import DatasetError
    from training.dp import DPUnavailable, PrivacyBudgetExceeded
    from training.train import TrainingDiverged

    codes: tuple[tuple[type[BaseException], str], ...] = (
        (InvalidKey, "invalid_key"),
        (ObjectNotFound, "object_not_found"),
        (ModelNotFound, "model_not_found"),
        (InvalidRequest, "invalid_request"),
        (TrainingDiverged, "training_diverged"),
        (PrivacyBudgetExceeded, "privacy_budget_exceeded"),
        (DPUnavailable, "dp_unavailable"),
        (CheckpointError, "checkpoint_error"),
        (DatasetError, "dataset_error"),
        (JobFailure, jobs.JOB_FAILED),
    )
    return next((code for kind, code in codes if isinstance(exc, kind)), INTERNAL_ERROR)


def report_failure(exc: BaseException, what: str) -> tuple[str, str]:
    """Log a failure and return (the message a user reads on the FAILED job, its error code).

    An expected failure's own message is the user's; an unexpected one's is a fixed sentence with a
    reference that finds its traceback in the log.
    """
    code = failure_code(exc)
    if code != INTERNAL_ERROR:
        log.warning("%s failed: %s", what, exc, exc_info=exc)
        return str(exc) or type(exc).__name__, code
    reference = uuid.uuid4().hex[:12]
    log.error("%s failed with an internal error (reference %s)", what, reference, exc_info=exc)
    return f"internal error (code: {INTERNAL_ERROR}, reference {reference})", code


def _is_expected(exc: BaseException) -> bool:
    """Failures the user can act on fail a job at once; anything else is retried (shards) or internal."""
    return failure_code(exc) != INTERNAL_ERROR


def refuse_if_shutting_down() -> None:
    """A worker that is shutting down puts new messages back instead of claiming their work."""
    if SHUTTING_DOWN.is_set():
        raise Reject("worker shutting down", requeue=True)


def run_job(job_id: str, pipeline: Pipeline) -> None:
    """Claim `job_id`, run `pipeline` on it and record SUCCEEDED, FAILED or CANCELLED."""
    refuse_if_shutting_down()
    settings = get_settings()
    configure_torch(settings)
    url, worker = settings.resolved_database_url(), worker_name()
    claimed = in_transaction(
        url, lambda s: _claim(s, job_id, worker, settings), what=f"claiming job {job_id}"
    )
    if claimed is None:
        log.info("job %s is not claimable; this delivery does nothing", job_id)
        return
    params, attempt, tenant, kind = claimed
    with log_context(job_id=job_id, task_id=_task_id(), attempt=attempt, worker=worker):
        _run_claimed(job_id, kind, pipeline, settings, worker, params, attempt, tenant)


def _task_id() -> str | None:
    return getattr(current_task.request, "id", None) if current_task else None


def _run_claimed(
    job_id: str,
    kind: str,
    pipeline: Pipeline,
    settings: Settings,
    worker: str,
    params: dict[str, Any],
    attempt: int,
    tenant: str,
) -> None:
    url = settings.resolved_database_url()
    ctx = JobContext(
        job_id,
        params,
        settings,
        RetryingStorage(open_storage(settings)),
        select_device(settings.device),
        worker=worker,
        attempt=attempt,
        tenant=tenant,
        max_runtime_seconds=float(params.get("max_runtime_seconds") or settings.max_runtime_seconds),
    )
    ctx.start_heartbeat()
    try:
        result = pipeline(ctx)
    except LeaseLost:
        log.warning("job %s was taken over by another worker; leaving it to them", job_id)
    except HandBack:
        _hand_back(url, job_id, kind, worker, settings)
    except JobCancelled:
        ctx.event("stopped", "the worker stopped at a batch boundary after the cancel; last checkpoint kept")
        _finish(url, job_id, worker, JobState.CANCELLED)
        _settle_storage(url, ctx.storage, job_id)
    except Exception as exc:  # noqa: BLE001 - a failing job must never take the worker down
        if is_transient(exc):
            # Infrastructure still down after the retries: leave the job to its lease; the reconciler
            # requeues it once the lease expires and it resumes from its checkpoint.
            log.exception("job %s hit a lasting infrastructure error; left for the reconciler", job_id)
        else:
            error, code = report_failure(exc, f"job {job_id}")
            _finish(url, job_id, worker, JobState.FAILED, error=error, error_code=code)
            _settle_storage(url, ctx.storage, job_id)
    else:
        _finish(url, job_id, worker, JobState.SUCCEEDED, result=result)
        _settle_storage(url, ctx.storage, job_id)
    finally:
        ctx.stop_heartbeat()


def _settle_storage(url: str, storage: Storage, job_id: str) -> None:
    """After a job ended here: record the bytes it stores besides shards (quota) and what a stopped one left.

    A job deleted while it ran has its outputs removed now that this worker, its only writer, has stopped.
    """

    def record(session: Session) -> None:
        job = jobs.get_job(session, job_id)
        if job.delete_requested_at is not None:
            deletion.finish_deletion(session, storage, job_id, grace_seconds=0)
            return
        stored = deletion.stored_besides_shards(storage, job_id, job.kind)
        size = sum(n for _, n in stored)
        jobs.record_output_bytes(session, job_id, size)
        if job.state not in (JobState.CANCELLED.value, JobState.FAILED.value):
            return
        if is_sharded(job.kind):
            shards.record_left_behind(session, job_id)  # its shards, from their rows
        elif stored:
            objects = [{"key": key, "bytes": n} for key, n in stored]
            jobs.record_left_behind(
                session, job_id, {"objects": objects, "count": len(objects), "bytes": size}
            )

    try:
        in_transaction(url, record, what=f"recording the storage of job {job_id}")
    except Exception:  # noqa: BLE001 - bookkeeping; the reconciler finishes a pending deletion
        log.warning("could not record the storage of job %s", job_id, exc_info=True)


def _claim(
    session: Session, job_id: str, worker: str, settings: Settings
) -> tuple[dict[str, Any], int, str, str] | None:
    if not jobs.claim_job(session, job_id, worker, settings.lease_seconds, settings.max_attempts):
        return None
    job = jobs.get_job(session, job_id)
    return dict(job.params), job.attempts, job.tenant, job.kind


def _hand_back(url: str, job_id: str, kind: str, worker: str, settings: Settings) -> None:
    """Put a checkpointed job back on the queue so another worker resumes it (graceful shutdown)."""
    reason = "worker shutting down; checkpoint kept"
    if in_transaction(url, lambda s: jobs.release_job(s, job_id, worker, reason), what="handing back"):
        enqueue_job(app, job_id, kind, settings)


def _finish(url: str, job_id: str, worker: str | None, state: JobState, **outcome: Any) -> None:
    try:
        in_transaction(
            url,
            lambda s: jobs.finish_job(s, job_id, state, worker=worker, **outcome),
            what=f"recording job {job_id} {state.value}",
        )
    except InvalidTransition as exc:
        # Cancelled (or taken over) while the last step ran, or a retry after a commit whose answer
        # was lost: the outcome already recorded stands.
        log.info("job %s not moved to %s: %s", job_id, state.value, exc)


@app.task(name=TRAIN_TASK, ignore_result=True)
def train_job(job_id: str) -> None:
    """Train a CVAE for a training job."""
    run_job(job_id, train_pipeline.run)


@app.task(name=SAMPLE_SHARD_TASK, ignore_result=True)
def sample_shard(job_id: str, shard: int) -> None:
    """Generate one shard of a sampling job; the worker finishing the last shard finalizes the job.

    However the shard ends (done, given back, failed, or not ours to run), the window may have room, so
    the next shards are released before this worker takes its next message.
    """
    refuse_if_shutting_down()
    settings = get_settings()
    configure_torch(settings)
    url, worker = settings.resolved_database_url(), worker_name()
    claimed = in_transaction(
        url, lambda s: _claim_shard(s, job_id, shard, worker, settings), what=f"claiming shard {shard}"
    )
    if claimed is None:
        log.info("shard %s of job %s is not claimable; this delivery does nothing", shard, job_id)
        dispatch_shards(app, settings)
        return
    row, params = claimed
    with log_context(job_id=job_id, shard=shard, task_id=_task_id(), attempt=row.attempts, worker=worker):
        _run_shard(row, params, settings, worker)


def _run_shard(row: JobShard, params: dict[str, Any], settings: Settings, worker: str) -> None:
    """Produce the shard here; record it (its tail) here too, or with `sample_overlap` on the hand-off
    thread while this worker's next task runs (`worker.handoff`)."""
    job_id, shard = row.job_id, row.index
    storage, device = RetryingStorage(open_storage(settings)), select_device(settings.device)
    lease = LeaseKeeper(
        settings, lambda s: shards.renew_shard_lease(s, job_id, shard, worker, settings.lease_seconds)
    )
    lease.start()
    try:
        produced = sample_pipeline.produce_shard(row, params, settings, storage, device, lambda: lease.lost)
    except BaseException as exc:
        lease.stop()
        _shard_stopped(settings, row, worker, exc)
        return
    deferred = settings.sample_overlap
    tail = lambda: _finish_shard(row, produced, lease, settings, worker, deferred=deferred)  # noqa: E731
    if deferred:
        HANDOFF.submit(tail)
    else:
        tail()


def _finish_shard(
    row: JobShard,
    produced: sample_pipeline.ProducedShard,
    lease: LeaseKeeper,
    settings: Settings,
    worker: str,
    *,
    deferred: bool,
) -> None:
    """Wait for the upload, then record the shard DONE and release the next units; finalize after the last.

    A deferred tail sends the finalizer as a task (the one the reconciler sends) instead of running it on
    the hand-off thread, beside the worker's next task.
    """
    job_id, shard, url = row.job_id, row.index, settings.resolved_database_url()
    try:
        try:
            outcome = produced.finish()
        finally:
            lease.stop()
        if lease.lost:
            raise LeaseLost(f"shard {shard} was taken over during its upload")
        recorded, released = in_transaction(
            url,
            lambda s: _complete_and_release(s, job_id, shard, worker, outcome, settings),
            what="recording a shard",
        )
    except BaseException as exc:
        _shard_stopped(settings, row, worker, exc)
        return
    publish_released(app, released, settings)  # the next unit is queued before this worker asks again
    if recorded and deferred:
        enqueue_finalizer(app, job_id, settings)
    elif recorded:
        finalize_sample(job_id)


def _shard_stopped(settings: Settings, row: JobShard, worker: str, exc: BaseException) -> None:
    """A shard that did not get recorded: lost to another owner (nothing to do) or failed (retry or fail)."""
    if isinstance(exc, LeaseLost):
        # Another worker (or the reconciler) owns the shard now: record nothing, retry nothing.
        log.warning(
            "shard %s of job %s: %s; stopped, leaving it to its new owner", row.index, row.job_id, exc
        )
        return
    if not isinstance(exc, Exception):
        raise exc  # KeyboardInterrupt, SystemExit: the worker is going down; the lease expires
    # A failing shard must never take the worker down.
    _shard_failed(settings, row.job_id, row.index, worker, row.attempts, exc)
    dispatch_shards(app, settings)


def _complete_and_release(
    session: Session, job_id: str, shard: int, worker: str, outcome: dict[str, Any], settings: Settings
) -> tuple[bool, dict[str, list[int]]]:
    """Record the shard and release the next units in one transaction (one commit per unit, not two).

    The release comes last, so the dispatcher's advisory lock is held only from there to the commit. A
    shard this worker lost still frees nothing, but releasing is harmless then too: the window decides.
    The weights are the tenant policies' (`tenant_policy.weights`), as at submit and in the reconciler:
    `SYNTHJOBS_TENANT_WEIGHTS` alone left a weight set in `SYNTHJOBS_TENANT_POLICIES` out of every
    release made here, i.e. of nearly all of them.
    """
    recorded = shards.complete_shard(session, job_id, shard, worker, **outcome)
    weights = tenant_policy.weights(settings)
    return recorded, dispatch.release_next(session, settings.shard_window, weights)


def _claim_shard(
    session: Session, job_id: str, shard: int, worker: str, settings: Settings
) -> tuple[JobShard, dict[str, Any]] | None:
    row = shards.claim_shard(session, job_id, shard, worker, settings.lease_seconds, settings.max_attempts)
    if row is None:
        return None
    params = dict(jobs.get_job(session, job_id).params)
    session.expunge(row)
    return row, params


def _shard_failed(
    settings: Settings, job_id: str, shard: int, worker: str, attempts: int, exc: Exception
) -> None:
    """Expected failures fail the job at once; others are retried with backoff up to max_attempts."""
    reason, code = report_failure(exc, f"shard {shard} of job {job_id} (attempt {attempts})")
    final = _is_expected(exc) or attempts >= settings.max_attempts

    def record(session: Session) -> bool:
        if final:
            suffix = "" if _is_expected(exc) else f" (after {attempts} attempts)"
            shards.fail_shard(session, job_id, shard, reason + suffix, error_code=code)
            return False
        return shards.release_shard(session, job_id, shard, worker, reason)

    if in_transaction(settings.resolved_database_url(), record, what=f"recording shard {shard} failure"):
        enqueue_shards(app, job_id, [shard], settings, countdown=min(60.0, 2.0**attempts))


@app.task(name=TICK_TASK, ignore_result=True)
def tick_schedules() -> None:
    """Fire the schedules that are due (sent every few seconds by `synthjobs beat`)."""
    schedule_tick.tick(get_settings(), app, fired_by=f"tick on {worker_name()}")


@app.task(name=FINALIZE_TASK, ignore_result=True)
def finalize_sample(job_id: str) -> None:
    """Finalize a sampling job whose shards are all done: exactly once, whoever asks."""
    settings = get_settings()
    url, worker = settings.resolved_database_url(), worker_name()
    claim = lambda s: shards.claim_finalizer(s, job_id, worker, settings.lease_seconds)  # noqa: E731
    if not in_transaction(url, claim, what=f"claiming the finalizer of {job_id}"):
        return
    with log_context(job_id=job_id, task_id=_task_id(), worker=worker):
        _finalize(job_id, settings, url)


def _finalize(job_id: str, settings: Settings, url: str) -> None:
    storage = RetryingStorage(open_storage(settings))
    try:
        result = sample_pipeline.finalize(job_id, settings, storage, select_device(settings.device))
    except Exception as exc:  # noqa: BLE001
        if is_transient(exc):
            log.exception(
                "finalizing job %s hit a lasting infrastructure error; left for the reconciler", job_id
            )
            return
        error, code = report_failure(exc, f"finalizing job {job_id}")
        _finish(url, job_id, None, JobState.FAILED, error=f"finalizing failed: {error}", error_code=code)
        _settle_storage(url, storage, job_id)  # its shards stay, listed in result.left_behind
        return
    _finish(url, job_id, None, JobState.SUCCEEDED, result=result)
    _settle_storage(url, storage, job_id)  # the manifest and preview grid


def resolve_pipeline(reference: str) -> Pipeline:
    """The function a `module:function` reference in a KindSpec names (imported only here, in the worker)."""
    module, _, name = reference.partition(":")
    if not module or not name:
        raise ValueError(f"pipeline reference {reference!r} is not 'module:function'")
    function: Pipeline = getattr(importlib.import_module(module), name)
    return function


def _job_task(reference: str) -> Callable[[str], None]:
    def run(job_id: str) -> None:
        run_job(job_id, resolve_pipeline(reference))

    return run


def bind_job_kinds() -> list[str]:
    """Register a Celery task for every job-level kind with a `pipeline` (plugins); their task names.

    The built-in kinds' tasks are the functions above; a plugin kind's task claims the job and runs the
    pipeline its spec names, with the same claim, lease, cancel and failure handling as training.
    """
    bound = []
    for spec in kinds():
        if spec.sharded or not spec.pipeline:
            continue
        app.task(name=spec.task, ignore_result=True)(_job_task(spec.pipeline))
        bound.append(spec.task)
    return bound


bind_job_kinds()
