"""The job state machine: the only module that changes job rows.

Every change is a guarded `UPDATE ... WHERE state IN (...)` checked by its row count, so two processes racing
on one job (a redelivered message, a cancel during a claim) can never both win, on SQLite or PostgreSQL.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, insert, literal, or_, select, update
from sqlalchemy.orm import Session

from synthjobs.errors import InvalidTransition, JobNotFound
from synthjobs.ledger import webhooks
from synthjobs.ledger.db import execute_dml
from synthjobs.ledger.tables import DEFAULT_TENANT, Job, JobEvent, JobState, Model, new_id, utcnow
from synthjobs.rules.fair_share import DEFAULT_PRIORITY
from synthjobs.rules.kinds import job_level_kinds

# Error codes the ledger itself records (the worker adds its own; see worker.tasks.failure_code).
JOB_FAILED = "job_failed"
WORKER_LOST = "worker_lost"
TERMINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})

# Which states each state may move to. Nothing leaves a terminal state.
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.CANCELLED, JobState.FAILED}),
    # RUNNING → QUEUED only when the worker's lease expired (it died): the job is run again, resuming.
    JobState.RUNNING: frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.QUEUED}),
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
}


def check_transition(current: JobState, target: JobState) -> None:
    """Raise InvalidTransition unless the state machine connects `current` to `target`."""
    if target not in TRANSITIONS[current]:
        raise InvalidTransition(f"a {current.value} job cannot become {target.value}")


def sources_of(target: JobState) -> list[str]:
    """The states from which `target` can be reached."""
    return [state.value for state, targets in TRANSITIONS.items() if target in targets]


def create_job(session: Session, kind: str, params: dict[str, Any], *, tenant: str = DEFAULT_TENANT) -> Job:
    """Add a QUEUED job; the caller commits before anything is enqueued, so no message outruns its row.

    Its priority (`rules.fair_share`) is the params' own, so a schedule's stored params carry theirs.
    Ids and timestamps are set here, not by a flush, so the job and its event go out in the caller's commit.
    """
    job = _new_job(kind, params, tenant)
    session.add(job)
    add_event(session, job.id, "submitted", f"{kind} job submitted")
    return job


def insert_job(
    session: Session,
    kind: str,
    params: dict[str, Any],
    *,
    tenant: str = DEFAULT_TENANT,
    reserved_bytes: int = 0,
    columns: Mapping[str, Any] | None = None,
) -> Job:
    """`create_job`'s two rows (the job, its "submitted" event) written now, in one statement on PostgreSQL.

    The submit path's hot spot: the ORM flushes the job's INSERT and then the event's (one round trip each,
    the second waiting for its serial id). Here PostgreSQL gets `WITH new_job AS (INSERT ... RETURNING id)
    INSERT INTO job_events ... SELECT ... FROM new_job`, one round trip in the caller's transaction; other
    databases (SQLite, in-process) get the two INSERTs. The rows hold what `create_job`'s flush would write.
    The returned Job is not in the session (it is not flushed again); it carries every column's value, for
    the response.
    """
    job = _new_job(kind, params, tenant)
    set_reserved_bytes(job, reserved_bytes)
    for name, value in (columns or {}).items():  # e.g. the job's own notify, set before the INSERT
        setattr(job, name, value)
    # Unset (None) columns are left out, so each gets its column default as in an ORM flush.
    row = {c.key: value for c in Job.__table__.columns if (value := getattr(job, c.key)) is not None}
    # `data` None is JSON null, as `add_event`'s ORM flush writes it (not SQL NULL).
    event = {
        "job_id": job.id,
        "at": job.created_at,
        "kind": "submitted",
        "message": f"{kind} job submitted",
        "data": None,
    }
    if session.get_bind().dialect.name == "postgresql":
        new_job = insert(Job).values(row).returning(Job.id).cte("new_job")
        values = select(
            new_job.c.id,
            literal(event["at"], JobEvent.at.type),
            literal(event["kind"], JobEvent.kind.type),
            literal(event["message"], JobEvent.message.type),
            literal(event["data"], JobEvent.data.type),
        )
        session.execute(
            insert(JobEvent).from_select(["job_id", "at", "kind", "message", "data"], values),
            execution_options={"synchronize_session": False},
        )
    else:
        session.execute(insert(Job), row)
        session.execute(insert(JobEvent), event)
    return job


def _new_job(kind: str, params: dict[str, Any], tenant: str) -> Job:
    """A QUEUED job, not added to a session: ids and timestamps set here, not at flush.

    Columns that start empty are left unset (reading one gives None): a flush then writes SQL NULL, and
    `insert_job` leaves them out of its row, so both paths write the same rows; an explicit None on a JSON
    column (`result`) would be flushed as JSON null instead.
    """
    now = utcnow()
    return Job(
        id=new_id(),
        kind=str(kind),
        state=JobState.QUEUED.value,
        params=params,
        phase="queued",
        tenant=tenant,
        priority=str(params.get("priority") or DEFAULT_PRIORITY),
        progress=0.0,
        attempts=0,
        created_at=now,
        updated_at=now,
        output_bytes=0,
        reserved_bytes=0,
    )


def set_reserved_bytes(job: Job, size: int) -> None:
    """Reserve `size` bytes of the tenant's storage quota for a new job until it ends."""
    job.reserved_bytes = max(0, int(size))


def get_job(session: Session, job_id: str, *, tenant: str | None = None) -> Job:
    """The job with that id, read fresh; with `tenant`, only if it is that tenant's (else JobNotFound)."""
    job = session.get(Job, job_id, populate_existing=True)
    if job is None or (tenant is not None and job.tenant != tenant):
        raise JobNotFound(f"no job with id {job_id}")
    return job


def claim_job(
    session: Session, job_id: str, worker: str, lease_seconds: float, max_attempts: int = 5
) -> bool:
    """Move a job to RUNNING for `worker`; False when it is not ours to run.

    A job is claimable when it is QUEUED, or RUNNING under a lease that expired (its worker died and the
    broker redelivered the message). Only one UPDATE can match, so a duplicate delivery does nothing. A
    job that has used up `max_attempts` is failed instead of being run again (a poison job must not loop).
    """
    now = utcnow()
    claimable = or_(
        Job.state == JobState.QUEUED.value,
        and_(Job.state == JobState.RUNNING.value, Job.lease_expires_at < now),
    )
    claimed = execute_dml(
        session,
        update(Job)
        .where(Job.id == job_id, claimable, Job.attempts < max_attempts)
        .values(
            state=JobState.RUNNING.value,
            attempts=Job.attempts + 1,
            worker=worker,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            started_at=func.coalesce(Job.started_at, now),
            phase="starting",
            updated_at=now,
        )
        .execution_options(synchronize_session=False),
    )
    if claimed == 1:
        attempts = get_job(session, job_id).attempts
        message = f"claimed by {worker}" + (f" (attempt {attempts})" if attempts > 1 else "")
        add_event(session, job_id, "claimed", message, {"worker": worker, "attempt": attempts})
        return True
    exhausted = execute_dml(
        session,
        update(Job)
        .where(Job.id == job_id, claimable, Job.attempts >= max_attempts)
        .values(
            state=JobState.FAILED.value,
            error=f"worker lost {max_attempts} times; giving up",
            error_code=WORKER_LOST,
            phase="failed",
            finished_at=now,
            lease_expires_at=None,
            updated_at=now,
        )
        .execution_options(synchronize_session=False),
    )
    if exhausted == 1:
        add_event(session, job_id, "failed", f"worker lost {max_attempts} times; giving up")
        webhooks.emit_job_event(session, job_id)
    return False


def renew_lease(session: Session, job_id: str, worker: str, lease_seconds: float) -> bool:
    """Extend `worker`'s lease on a RUNNING job; False when the job is no longer its to run."""
    now = utcnow()
    renewed = execute_dml(
        session,
        update(Job)
        .where(Job.id == job_id, Job.state == JobState.RUNNING.value, Job.worker == worker)
        .values(lease_expires_at=now + timedelta(seconds=lease_seconds))
        .execution_options(synchronize_session=False),
    )
    return renewed == 1


def requeue_expired(session: Session, job_id: str, reason: str) -> bool:
    """Move a RUNNING job whose lease expired back to QUEUED (the reconciler then re-enqueues it)."""
    now = utcnow()
    requeued = execute_dml(
        session,
        update(Job)
        .where(Job.id == job_id, Job.state == JobState.RUNNING.value, Job.lease_expires_at < now)
        .values(state=JobState.QUEUED.value, phase=f"requeued: {reason}"[:200], worker=None, updated_at=now)
        .execution_options(synchronize_session=False),
    )
    if requeued == 1:
        add_event(session, job_id, "requeued", reason)
    return requeued == 1


def release_job(session: Session, job_id: str, worker: str, reason: str) -> bool:
    """Hand a RUNNING job held by `worker` back to QUEUED (graceful shutdown); it resumes elsewhere."""
    released = execute_dml(
        session,
        update(Job)
        .where(Job.id == job_id, Job.state == JobState.RUNNING.value, Job.worker == worker)
        .values(
            state=JobState.QUEUED.value,
            phase=f"requeued: {reason}"[:200],
            worker=None,
            lease_expires_at=None,
            updated_at=utcnow(),
        )
        .execution_options(synchronize_session=False),
    )
    if released == 1:
        add_event(session, job_id, "requeued", reason)
    return released == 1


def cancel_job(session: Session, job_id: str, *, tenant: str | None = None) -> Job:
    """Cancel a QUEUED or RUNNING job; InvalidTransition (409) for a finished one.

    A queued job will never run (its claim finds it CANCELLED); a running one stops at its next batch
    boundary, when its worker notices, keeping its last checkpoint.
    """
    get_job(session, job_id, tenant=tenant)
    finish_job(session, job_id, JobState.CANCELLED, error=None)
    return get_job(session, job_id)


def finish_job(
    session: Session,
    job_id: str,
    target: JobState,
    *,
    error: str | None = None,
    result: dict[str, Any] | None = None,
    worker: str | None = None,
    error_code: str | None = None,
) -> None:
    """Move a job into a terminal state, refusing transitions the state machine does not allow.

    With `worker`, only while that worker still holds the job: a worker that lost its lease to another
    must not overwrite the other's outcome. A FAILED job always gets an `error_code` (JOB_FAILED unless
    the caller names one).
    """
    if target not in TERMINAL_STATES:
        raise InvalidTransition(f"{target.value} is not a final state")
    values: dict[str, Any] = {"state": target.value, "finished_at": utcnow(), "updated_at": utcnow()}
    values["phase"] = target.value.lower()
    values["lease_expires_at"] = None
    values["reserved_bytes"] = 0  # what it wrote is counted from its shards and output_bytes now
    if target is JobState.SUCCEEDED:
        values["progress"] = 1.0
    if error is not None:
        values["error"] = error[:10_000]
    if target is JobState.FAILED:
        values["error_code"] = (error_code or JOB_FAILED)[:64]
    if result is not None:
        values["result"] = result
    _guarded_update(session, job_id, target, values, worker)
    message = error if error else target.value.lower()
    add_event(session, job_id, target.value.lower(), message)
    webhooks.emit_job_event(session, job_id)  # the outbox row commits with the state change, or neither


def _guarded_update(
    session: Session, job_id: str, target: JobState, values: dict[str, Any], worker: str | None = None
) -> None:
    query = update(Job).where(Job.id == job_id, Job.state.in_(sources_of(target)))
    if worker is not None:
        query = query.where(Job.worker == worker)
    changed = execute_dml(session, query.values(**values).execution_options(synchronize_session=False))
    if changed != 1:
        current = JobState(get_job(session, job_id).state)
        check_transition(current, target)
        raise InvalidTransition(f"job {job_id} changed state concurrently (now {current.value})")


def set_progress(session: Session, job_id: str, progress: float, phase: str) -> bool:
    """Record how far a RUNNING job is; False when the job is no longer running (e.g. cancelled)."""
    changed = execute_dml(
        session,
        update(Job)
        .where(Job.id == job_id, Job.state == JobState.RUNNING.value)
        .values(
            progress=min(max(progress, 0.0), 1.0) if math.isfinite(progress) else 0.0,
            phase=phase[:200],
            updated_at=utcnow(),
        )
        .execution_options(synchronize_session=False),
    )
    return changed == 1


def add_event(
    session: Session, job_id: str, kind: str, message: str, data: dict[str, Any] | None = None
) -> None:
    """Append an event to the job's history."""
    session.add(JobEvent(job_id=job_id, kind=kind, message=message[:2000], data=data))


def record_progress(
    session: Session,
    job_id: str,
    progress: float,
    phase: str,
    events: Sequence[tuple[str, str, dict[str, Any] | None]],
) -> bool:
    """`set_progress` and `add_event` of each (kind, message, data) in the caller's one transaction.

    A training epoch ends with both; one commit instead of two is what the per-epoch bookkeeping costs
    (a 20-ms epoch of the 8x8 MLP paid two). The events are added even when the job is no longer running,
    as separate `add_event` calls would; the return value is `set_progress`'s.
    """
    running = set_progress(session, job_id, progress, phase)
    for kind, message, data in events:
        add_event(session, job_id, kind, message, data)
    return running


def list_events(session: Session, job_id: str, *, tenant: str | None = None) -> Sequence[JobEvent]:
    """The job's events, oldest first."""
    get_job(session, job_id, tenant=tenant)
    query = select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id)
    return session.scalars(query).all()


def encode_cursor(job: Job) -> str:
    """An opaque cursor pointing just after `job` in newest-first order."""
    raw = f"{job.created_at.isoformat()}|{job.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Inverse of encode_cursor; ValueError on anything that is not one."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, job_id = raw.split("|", 1)
        when = datetime.fromisoformat(created)
        when.astimezone(UTC)  # OverflowError for 0001-01-01T00:00+14:00 and the like, not at SQL bind time
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError) as exc:
        raise ValueError("malformed cursor") from exc
    if when.tzinfo is None or "\x00" in job_id:  # PostgreSQL cannot compare text with a NUL
        raise ValueError("malformed cursor")
    return when, job_id


def list_jobs(
    session: Session,
    *,
    state: JobState | None = None,
    kind: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
    tenant: str | None = None,
    include_deleted: bool = False,
    model_ids: Sequence[str] | None = None,
    job_ids: Sequence[str] | None = None,
) -> tuple[Sequence[Job], str | None]:
    """A page of jobs, newest first, and the cursor of the next page (None on the last).

    Keyset pagination on (created_at, id): pages stay stable while new jobs arrive. Deleted jobs are left
    out unless `include_deleted`. `model_ids` keeps the jobs that trained or sampled one of those models;
    `job_ids` keeps only those jobs (a schedule's runs).
    """
    query = select(Job).order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1)
    if not include_deleted:
        query = query.where(Job.deleted_at.is_(None))
    if tenant is not None:
        query = query.where(Job.tenant == tenant)
    if state is not None:
        query = query.where(Job.state == state.value)
    if kind is not None:
        query = query.where(Job.kind == str(kind))
    if model_ids is not None:
        trained = select(Model.training_job_id).where(Model.id.in_(model_ids))
        query = query.where(or_(Job.id.in_(trained), Job.params["model_id"].as_string().in_(model_ids)))
    if job_ids is not None:
        query = query.where(Job.id.in_(job_ids))
    if cursor:
        created, job_id = decode_cursor(cursor)
        query = query.where(or_(Job.created_at < created, and_(Job.created_at == created, Job.id < job_id)))
    jobs = session.scalars(query).all()
    if len(jobs) > limit:
        return jobs[:limit], encode_cursor(jobs[limit - 1])
    return jobs, None


def request_deletion(session: Session, job_id: str) -> bool:
    """Record that the job's outputs are to be deleted (it must be finished first); True the first time.

    The row stays: a deleted job keeps its history, and its terminal state means a redelivered task for it
    does nothing.
    """
    now = utcnow()
    changed = execute_dml(
        session,
        update(Job)
        .where(Job.id == job_id, Job.delete_requested_at.is_(None), Job.deleted_at.is_(None))
        .values(delete_requested_at=now, updated_at=now)
        .execution_options(synchronize_session=False),
    )
    if changed == 1:
        add_event(session, job_id, "delete_requested", "deletion of the job's outputs requested")
    return changed == 1


def abandon_deletion(session: Session, job_id: str, reason: str) -> None:
    """Withdraw a deletion request that must not be carried out (what it would delete is in use)."""
    execute_dml(
        session,
        update(Job)
        .where(Job.id == job_id, Job.deleted_at.is_(None))
        .values(delete_requested_at=None, updated_at=utcnow())
        .execution_options(synchronize_session=False),
    )
    add_event(session, job_id, "delete_abandoned", f"outputs kept: {reason}")


def mark_deleted(session: Session, job_id: str, objects: int, size: int) -> bool:
    """Record that a finished job's outputs are gone (`objects` removed, `size` bytes); True the first time.

    Its bytes stop counting toward the tenant's storage quota from this commit on.
    """
    job = get_job(session, job_id)
    if job.deleted_at is not None or job.delete_requested_at is None:
        return False
    if JobState(job.state) not in TERMINAL_STATES:
        raise InvalidTransition(f"a {job.state} job's outputs cannot be deleted; cancel it first")
    now = utcnow()
    result = {**(job.result or {}), "deleted": {"objects": objects, "bytes": size, "at": now.isoformat()}}
    result.pop("left_behind", None)
    changed = execute_dml(
        session,
        update(Job)
        .where(Job.id == job_id, Job.deleted_at.is_(None))
        .values(deleted_at=now, output_bytes=0, result=result, phase="deleted", updated_at=now)
        .execution_options(synchronize_session=False),
    )
    if changed == 1:
        add_event(session, job_id, "deleted", f"outputs deleted: {objects} objects, {size} bytes")
    return changed == 1


def record_output_bytes(session: Session, job_id: str, size: int) -> None:
    """Record the bytes a job stores besides its shards (what the storage quota counts for it)."""
    execute_dml(
        session,
        update(Job)
        .where(Job.id == job_id, Job.deleted_at.is_(None))
        .values(output_bytes=max(0, int(size)))
        .execution_options(synchronize_session=False),
    )


def record_left_behind(session: Session, job_id: str, left_behind: dict[str, Any]) -> None:
    """Put what a cancelled or failed job left in storage into its result (`result.left_behind`)."""
    job = get_job(session, job_id)
    if job.deleted_at is not None or JobState(job.state) not in TERMINAL_STATES:
        return
    execute_dml(
        session,
        update(Job)
        .where(Job.id == job_id, Job.deleted_at.is_(None))
        .values(result={**(job.result or {}), "left_behind": left_behind})
        .execution_options(synchronize_session=False),
    )


def expired_leases(session: Session) -> Sequence[str]:
    """Job-level jobs RUNNING on a lease that has expired (their worker died): the reconciler's to repair."""
    return session.scalars(
        select(Job.id).where(
            Job.kind.in_(job_level_kinds()),
            Job.state == JobState.RUNNING.value,
            Job.lease_expires_at < utcnow(),
        )
    ).all()


def stale_queued(session: Session, cutoff: datetime, fresh: set[str]) -> dict[str, str]:
    """Job-level jobs QUEUED and untouched since `cutoff` (or in `fresh`, just requeued), id → kind: to
    publish again."""
    rows = session.execute(
        select(Job.id, Job.kind).where(
            Job.kind.in_(job_level_kinds()),
            Job.state == JobState.QUEUED.value,
            or_(Job.updated_at < cutoff, Job.id.in_(fresh)),
        )
    ).all()
    return {job_id: kind for job_id, kind in rows}


def touch_queued(session: Session, job_id: str) -> None:
    """Mark a still-QUEUED job as just published (its message sent again), so it waits a full period."""
    session.execute(
        update(Job)
        .where(Job.id == job_id, Job.state == JobState.QUEUED.value)
        .values(updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
