"""Deleting a job's outputs, expiring old ones, and counting what a tenant stores.

A job owns everything under `jobs/{job_id}/` (shards, manifest, preview, training checkpoints) and, for a
training job, `models/{model_id}/`. Deletion is two steps so that no crash can leave bytes nobody tracks:
first the intent is committed (`delete_requested_at`; a running job is cancelled in the same commit), then
the objects go and the row is marked `deleted_at`. A job that may still be writing (a shard in flight, a
training worker that has not yet noticed its cancel) stays "delete requested"; the reconciler finishes it
once the writer has stopped, deleting whatever landed meanwhile. The row itself is kept: its history stays
readable, listings hide it, and its terminal state makes any redelivered task for it do nothing.

A training job whose model version is registered is not deleted (DeletionRefused, a 409): the version may
be aliased, sampled from by other jobs or compared against by a schedule's promotion gate, and deleting its
checkpoint would break all of them. Retention skips such jobs too.

Usage is summed in SQL — shard bytes, each job's other outputs, the reservation of queued and running
sampling jobs, uploaded datasets — never by listing storage.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from synthjobs.errors import DeletionRefused
from synthjobs.ledger import jobs
from synthjobs.ledger.registry import model_id_for_job
from synthjobs.ledger.tables import (
    Dataset,
    Job,
    JobEvent,
    JobShard,
    JobState,
    Model,
    ShardState,
    utcnow,
)
from synthjobs.rules.kinds import is_sharded, trains_model
from synthjobs.storage.base import Storage

log = logging.getLogger(__name__)
IN_FLIGHT = (JobState.QUEUED.value, JobState.RUNNING.value)


@dataclass
class Removed:
    """What one deletion pass removed from storage."""

    objects: list[tuple[str, int]] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(size for _, size in self.objects)


def job_prefixes(job_id: str, kind: str) -> list[str]:
    """The storage folders a job owns: its own, and a model-training kind's model folder."""
    prefixes = [f"jobs/{job_id}/"]
    if trains_model(kind):
        prefixes.append(f"models/{model_id_for_job(job_id)}/")
    return prefixes


def registered_model(session: Session, job: Job) -> Model | None:
    """The model version a model-training job registered, if any."""
    if not trains_model(job.kind):
        return None
    return session.get(Model, model_id_for_job(job.id))


def check_deletable(session: Session, job: Job) -> None:
    """DeletionRefused while a model version trained by `job` is registered (its checkpoint is in use)."""
    model = registered_model(session, job)
    if model is not None:
        raise DeletionRefused(
            f"job {job.id} trained model {model.name}:{model.version} ({model.id}), which is registered; "
            "its checkpoint stays while the model version exists"
        )


def begin_deletion(session: Session, job_id: str, *, tenant: str | None = None) -> Job:
    """Cancel the job if it is queued or running and record the deletion request; the caller commits.

    JobNotFound for another tenant's job, DeletionRefused for a training job whose model is registered.
    """
    job = jobs.get_job(session, job_id, tenant=tenant)
    if job.deleted_at is not None:
        return job
    check_deletable(session, job)
    if job.state in IN_FLIGHT:
        try:
            jobs.finish_job(session, job_id, JobState.CANCELLED)
        except jobs.InvalidTransition:
            pass  # it finished meanwhile: delete it as it ended
    jobs.request_deletion(session, job_id)
    return jobs.get_job(session, job_id)


def may_still_write(session: Session, job: Job, grace_seconds: float) -> bool:
    """Whether a worker may still add objects under the job's prefixes.

    A sampling job's shard in flight holds a lease, and counts as a writer until `grace_seconds` past its
    expiry: a worker whose renewal came late (a busy database, a starved thread) is not stopped by that and
    still uploads, so a lapsed lease alone does not prove the shard will not land.

    A training worker stops at the next batch after it notices its cancel (its lease renewal fails) and
    then records a `stopped` event; until that event, a training job cancelled while it ran is given
    `grace_seconds` (a lease) from its end, in case its worker died instead.
    """
    if job.state in IN_FLIGHT:
        return True
    if is_sharded(job.kind):
        live = session.scalar(
            select(func.count())
            .select_from(JobShard)
            .where(
                JobShard.job_id == job.id,
                JobShard.state == ShardState.RUNNING.value,
                JobShard.lease_expires_at >= utcnow() - timedelta(seconds=grace_seconds),
            )
        )
        return bool(live)
    recent = job.finished_at is not None and job.finished_at > utcnow() - timedelta(seconds=grace_seconds)
    if job.state != JobState.CANCELLED.value or job.started_at is None or not recent:
        return False
    stopped = select(JobEvent.id).where(JobEvent.job_id == job.id, JobEvent.kind == "stopped").limit(1)
    return session.scalar(stopped) is None  # its worker says when it has stopped, after its last write


def remove_outputs(storage: Storage, job: Job) -> Removed:
    """Delete every object under the job's prefixes (absent ones are fine; safe to repeat)."""
    removed = Removed()
    for prefix in job_prefixes(job.id, job.kind):
        removed.objects.extend(storage.delete_prefix(prefix))
    return removed


def finish_deletion(session: Session, storage: Storage, job_id: str, grace_seconds: float) -> Removed | None:
    """Remove a delete-requested job's objects; mark it deleted unless a writer may still add more.

    Returns what was removed, or None when the job is not awaiting deletion. The caller commits.
    """
    job = jobs.get_job(session, job_id)
    if job.delete_requested_at is None or job.deleted_at is not None or job.state in IN_FLIGHT:
        return None
    model = registered_model(session, job)
    if model is not None:  # registered in the last moments of a run cancelled by DELETE: the model stays
        jobs.abandon_deletion(session, job_id, f"model {model.name}:{model.version} was registered")
        return None
    removed = remove_outputs(storage, job)
    if not may_still_write(session, job, grace_seconds):
        jobs.mark_deleted(session, job_id, len(removed.objects), removed.bytes)
    return removed


def pending_deletions(session: Session, limit: int = 100) -> list[str]:
    """Jobs whose deletion was requested but not completed (a writer was still running, or a crash)."""
    query = (
        select(Job.id)
        .where(Job.delete_requested_at.is_not(None), Job.deleted_at.is_(None), Job.state.not_in(IN_FLIGHT))
        .order_by(Job.delete_requested_at)
        .limit(limit)
    )
    return list(session.scalars(query).all())


def expired_jobs(session: Session, retention_days: float, limit: int = 100) -> list[str]:
    """Finished, undeleted jobs that ended more than `retention_days` ago, oldest first.

    Training jobs whose model version is registered are left out: the model is kept, not expired.
    """
    cutoff = utcnow() - timedelta(days=retention_days)
    has_model = select(Model.id).where(Model.training_job_id == Job.id).exists()
    query = (
        select(Job.id)
        .where(
            Job.deleted_at.is_(None),
            Job.delete_requested_at.is_(None),
            Job.finished_at < cutoff,
            Job.state.not_in(IN_FLIGHT),
            ~has_model,
        )
        .order_by(Job.finished_at)
        .limit(limit)
    )
    return list(session.scalars(query).all())


def tenant_usage(session: Session, tenant: str) -> int:
    """Bytes `tenant` stores, from SQL: what it wrote, what its running sampling jobs reserved, its uploads.

    A queued or running sampling job counts its reservation (its planned output), a finished one the shard
    bytes it recorded; every undeleted job adds its other outputs (checkpoints, model artifacts, manifest).
    """
    live = (Job.tenant == tenant, Job.deleted_at.is_(None))
    # Other outputs and reservations in one pass over the tenant's jobs (a scan of its rows each).
    in_flight_reserved = case((Job.state.in_(IN_FLIGHT), Job.reserved_bytes), else_=0)
    jobs_bytes = select(func.coalesce(func.sum(Job.output_bytes + in_flight_reserved), 0)).where(*live)
    shards = (
        select(func.coalesce(func.sum(JobShard.bytes), 0))
        .join(Job, Job.id == JobShard.job_id)
        .where(*live, Job.state.not_in(IN_FLIGHT))
    )
    uploads = select(func.coalesce(func.sum(Dataset.bytes), 0)).where(Dataset.tenant == tenant)
    # One SELECT of the three sums: every submit asks this, and each query of its own was a round trip.
    row = session.execute(select(*(query.scalar_subquery() for query in (jobs_bytes, shards, uploads)))).one()
    return sum(int(value or 0) for value in row)


def stored_besides_shards(storage: Storage, job_id: str, kind: str) -> list[tuple[str, int]]:
    """The job's objects other than its shards (which are counted from their own rows)."""
    shard_prefix = f"jobs/{job_id}/shard-"
    return [
        (key, size)
        for prefix in job_prefixes(job_id, kind)
        for key, size in storage.list_objects(prefix)
        if not key.startswith(shard_prefix)
    ]
