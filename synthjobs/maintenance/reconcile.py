"""The reconciler: finds jobs the queue lost track of and puts them back on it.

SQL is the ledger and Redis only carries messages, so every repair starts from SQL: a RUNNING job whose
lease expired (its worker died) is requeued — or failed once it has used up its attempts — and a QUEUED
job that has waited past a threshold is published again in case its message was lost. Each action is a
guarded update plus an event on the job, so any number of reconcilers can run at once; a duplicate message
is harmless because only one claim can succeed.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from synthjobs.broker.dispatch import dispatch_shards
from synthjobs.broker.queue import enqueue_finalizer, enqueue_job, enqueue_shards
from synthjobs.errors import InvalidTransition, StorageError
from synthjobs.ledger import deletion, idempotency, jobs, shards
from synthjobs.ledger.db import session_scope
from synthjobs.ledger.tables import JobState, utcnow
from synthjobs.maintenance.webhooks import deliver_due
from synthjobs.settings import Settings
from synthjobs.storage import open_storage
from synthjobs.storage.retry import RetryingStorage

if TYPE_CHECKING:
    from celery import Celery

log = logging.getLogger(__name__)


@dataclass
class ReconcileReport:
    """What one pass did, by job id (shards as `job_id#index`)."""

    requeued: list[str] = field(default_factory=list)
    republished: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    shards_requeued: list[str] = field(default_factory=list)
    finalizers: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    idempotency_keys_purged: int = 0
    deleted: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    webhooks_delivered: list[str] = field(default_factory=list)


def reconcile(settings: Settings, sender: Celery) -> ReconcileReport:
    """One pass over the ledger; safe to run concurrently from several processes."""
    report = ReconcileReport()
    _requeue_lost_workers(settings, report)
    _requeue_lost_shards(settings, report)
    _republish_stale_queued(settings, sender, report)
    _republish_stale_shards(settings, sender, report)
    _fill_window(settings, sender, report)
    _finalize_forgotten(settings, sender, report)
    complete_deletions(settings, report)
    expire_outputs(settings, report)
    report.webhooks_delivered = deliver_due(settings)
    with session_scope(settings.resolved_database_url()) as session:
        report.idempotency_keys_purged = idempotency.purge(session, settings.idempotency_hours)
    if any(asdict(report).values()):
        log.info("reconciler: %s", report)
    return report


def _requeue_lost_workers(settings: Settings, report: ReconcileReport) -> None:
    url = settings.resolved_database_url()
    with session_scope(url) as session:
        expired = jobs.expired_leases(session)
    for job_id in expired:
        with session_scope(url) as session:
            job = jobs.get_job(session, job_id)
            if job.attempts >= settings.max_attempts:
                reason = f"worker lost {job.attempts} times; giving up"
                try:
                    jobs.finish_job(
                        session, job_id, JobState.FAILED, error=reason, error_code=jobs.WORKER_LOST
                    )
                    report.failed.append(job_id)
                except InvalidTransition:
                    pass
            elif jobs.requeue_expired(session, job_id, f"worker {job.worker} lost (lease expired)"):
                report.requeued.append(job_id)


def _requeue_lost_shards(settings: Settings, report: ReconcileReport) -> None:
    """Shards whose worker died go back to PENDING; the stale-shard pass publishes them again."""
    with session_scope(settings.resolved_database_url()) as session:
        for shard in shards.lost_shards(session):
            if shards.release_shard(session, shard.job_id, shard.index, shard.worker or "", "worker lost"):
                jobs.add_event(
                    session, shard.job_id, "requeued", f"shard {shard.index}: worker {shard.worker} lost"
                )
                report.shards_requeued.append(f"{shard.job_id}#{shard.index}")


def _republish_stale_queued(settings: Settings, sender: Celery, report: ReconcileReport) -> None:
    url = settings.resolved_database_url()
    cutoff = utcnow() - timedelta(seconds=settings.requeue_after)
    fresh = set(report.requeued)
    with session_scope(url) as session:
        stale = jobs.stale_queued(session, cutoff, fresh)
    for job_id, kind in stale.items():
        if not enqueue_job(sender, job_id, kind, settings):
            continue
        with session_scope(url) as session:
            jobs.touch_queued(session, job_id)
            if job_id not in fresh:  # even if a worker claimed it meanwhile: the publish happened
                jobs.add_event(
                    session, job_id, "republished", "no worker took it in time; message published again"
                )
                report.republished.append(job_id)


def _republish_stale_shards(settings: Settings, sender: Celery, report: ReconcileReport) -> None:
    """Released PENDING shards of live jobs not touched for `requeue_after` (or just given back by a lost
    worker) are published again; unreleased ones wait for the window (`_fill_window`)."""
    url = settings.resolved_database_url()
    cutoff = utcnow() - timedelta(seconds=settings.requeue_after)
    given_back = {tuple(s.split("#")) for s in report.shards_requeued}
    with session_scope(url) as session:
        rows = shards.pending_shards_of_live_jobs(session)
    by_job: dict[str, list[int]] = {}
    for job_id, index, updated_at in rows:
        if updated_at < cutoff or (job_id, str(index)) in given_back:
            by_job.setdefault(job_id, []).append(index)
    for job_id, indexes in by_job.items():
        if enqueue_shards(sender, job_id, indexes, settings):
            with session_scope(url) as session:
                shards.touch_pending_shards(session, job_id, indexes)
            report.republished.extend(f"{job_id}#{i}" for i in indexes)


def _fill_window(settings: Settings, sender: Celery, report: ReconcileReport) -> None:
    """Release waiting shards while the window is short (a publish failed, a job was cancelled, or no
    shard task ended lately to do it)."""
    released = dispatch_shards(sender, settings)
    report.released.extend(f"{job_id}#{i}" for job_id, indexes in released.items() for i in indexes)


def _finalize_forgotten(settings: Settings, sender: Celery, report: ReconcileReport) -> None:
    """Sampling jobs whose shards are all done but whose finalizer never ran (or died) get one."""
    with session_scope(settings.resolved_database_url()) as session:
        waiting = shards.unfinalized_jobs(session)
    for job_id in waiting:
        if enqueue_finalizer(sender, job_id, settings):
            report.finalizers.append(job_id)


def complete_deletions(settings: Settings, report: ReconcileReport) -> None:
    """Finish deletions that waited for a worker to stop (or were cut short by a crash)."""
    url = settings.resolved_database_url()
    with session_scope(url) as session:
        waiting = deletion.pending_deletions(session)
    if not waiting:
        return
    storage = RetryingStorage(open_storage(settings))
    for job_id in waiting:
        try:
            with session_scope(url) as session:
                deletion.finish_deletion(session, storage, job_id, settings.lease_seconds)
                if jobs.get_job(session, job_id).deleted_at is not None:
                    report.deleted.append(job_id)
        except StorageError:  # this job waits for the next pass; the others need not
            log.warning("could not delete the outputs of job %s", job_id, exc_info=True)


def expire_outputs(settings: Settings, report: ReconcileReport) -> None:
    """Delete the outputs of jobs that ended more than SYNTHJOBS_RETENTION_DAYS ago (0: never)."""
    if settings.retention_days <= 0:
        return
    url = settings.resolved_database_url()
    with session_scope(url) as session:
        expired = deletion.expired_jobs(session, settings.retention_days)
    if not expired:
        return
    storage = RetryingStorage(open_storage(settings))
    for job_id in expired:
        with session_scope(url) as session:  # the request is committed before any object goes
            if not jobs.request_deletion(session, job_id):
                continue
            jobs.add_event(session, job_id, "expired", f"older than {settings.retention_days:g} days")
        report.expired.append(job_id)
        try:
            with session_scope(url) as session:
                deletion.finish_deletion(session, storage, job_id, settings.lease_seconds)
        except StorageError:  # requested and committed: complete_deletions finishes it on a later pass
            log.warning("could not delete the outputs of expired job %s", job_id, exc_info=True)
