"""Shards of sampling jobs: each its own task, tracked in SQL (not by a Celery chord).

A shard is claimed with a guarded update like a job; when the last shard is done, whichever worker finished
it claims the job's finalizer (`jobs.finalizer IS NULL` and no shard left undone), so the finalizer runs
exactly once however shards were retried or redelivered.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, Select, and_, func, insert, or_, select, update
from sqlalchemy.orm import Session

from synthjobs.ledger import jobs
from synthjobs.ledger.db import execute_dml
from synthjobs.ledger.tables import Job, JobShard, JobState, ShardState, utcnow
from synthjobs.rules.kinds import SAMPLE, sharded_kinds
from synthjobs.rules.sharding import plan_shards


def create_shards(session: Session, job_id: str, plan: list[list[int]]) -> None:
    """Add one PENDING shard per row of `plan` (per-class counts)."""
    rows = [
        {
            "job_id": job_id,
            "index": index,
            "state": ShardState.PENDING.value,
            "count": sum(counts),
            "per_class": {"counts": counts},
            "attempts": 0,
            "updated_at": utcnow(),
        }
        for index, counts in enumerate(plan)
    ]
    for start in range(0, len(rows), 1000):
        session.execute(insert(JobShard), rows[start : start + 1000])


def shard_key(job_id: str, index: int, extension: str) -> str:
    """A shard's object key: from the job id and shard index only, so a retry overwrites."""
    return f"jobs/{job_id}/shard-{index:05d}.{extension}"


def claim_shard(
    session: Session, job_id: str, index: int, worker: str, lease_seconds: float, max_attempts: int
) -> JobShard | None:
    """Take shard `index` for `worker`; None when the job is not running or the shard is not ours to run.

    The first shard claimed moves the job from QUEUED to RUNNING.
    """
    job = jobs.get_job(session, job_id)
    if job.state == JobState.QUEUED.value:
        _start_job(session, job_id, worker)
    elif job.state != JobState.RUNNING.value:
        return None
    now = utcnow()
    claimable = or_(
        JobShard.state == ShardState.PENDING.value,
        and_(JobShard.state == ShardState.RUNNING.value, JobShard.lease_expires_at < now),
    )
    claimed = execute_dml(
        session,
        update(JobShard)
        .where(
            JobShard.job_id == job_id, JobShard.index == index, claimable, JobShard.attempts < max_attempts
        )
        .values(
            state=ShardState.RUNNING.value,
            attempts=JobShard.attempts + 1,
            worker=worker,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            claimed_at=func.coalesce(JobShard.claimed_at, now),
            updated_at=now,
        )
        .execution_options(synchronize_session=False),
    )
    if claimed != 1:
        return None
    return session.get(JobShard, (job_id, index), populate_existing=True)


def _start_job(session: Session, job_id: str, worker: str) -> None:
    now = utcnow()
    started = execute_dml(
        session,
        update(Job)
        .where(Job.id == job_id, Job.state == JobState.QUEUED.value)
        .values(
            state=JobState.RUNNING.value,
            attempts=Job.attempts + 1,
            started_at=func.coalesce(Job.started_at, now),
            phase="sampling",
            worker=None,
            lease_expires_at=None,
            updated_at=now,
        )
        .execution_options(synchronize_session=False),
    )
    if started:
        jobs.add_event(session, job_id, "started", f"first shard claimed by {worker}", {"worker": worker})


def _update_held(session: Session, job_id: str, index: int, holder: str, **values: Any) -> bool:
    """Change a RUNNING shard only while `holder` holds it; True when it did."""
    changed = execute_dml(
        session,
        update(JobShard)
        .where(
            JobShard.job_id == job_id,
            JobShard.index == index,
            JobShard.worker == holder,
            JobShard.state == ShardState.RUNNING.value,
        )
        .values(**values)
        .execution_options(synchronize_session=False),
    )
    return bool(changed == 1)


def renew_shard_lease(session: Session, job_id: str, index: int, worker: str, lease_seconds: float) -> bool:
    """Extend `worker`'s lease on a running shard; False when the shard is no longer its to run."""
    return _update_held(
        session, job_id, index, worker, lease_expires_at=utcnow() + timedelta(seconds=lease_seconds)
    )


def complete_shard(
    session: Session,
    job_id: str,
    index: int,
    worker: str,
    *,
    key: str,
    sha256: str,
    size: int,
    seconds: float,
    quality: dict[str, Any],
) -> bool:
    """Record a written shard; False if this worker lost the shard meanwhile (its twin's record stands)."""
    done = _update_held(
        session,
        job_id,
        index,
        worker,
        state=ShardState.DONE.value,
        key=key,
        sha256=sha256,
        bytes=size,
        seconds=seconds,
        quality=quality,
        lease_expires_at=None,
        error=None,
        updated_at=utcnow(),
    )
    if done:
        _update_progress(session, job_id)
        if jobs.get_job(session, job_id).state != JobState.RUNNING.value:
            record_left_behind(session, job_id)  # landed after a cancel or failure: list it too
    return done


def release_shard(session: Session, job_id: str, index: int, worker: str, error: str) -> bool:
    """Give a shard back (transient failure): PENDING again for another try. False if not ours."""
    return _update_held(
        session,
        job_id,
        index,
        worker,
        state=ShardState.PENDING.value,
        worker=None,
        lease_expires_at=None,
        error=error[:2000],
        updated_at=utcnow(),
    )


def fail_shard(session: Session, job_id: str, index: int, error: str, error_code: str | None = None) -> None:
    """Mark a shard failed for good and fail its job, naming the shard and the reason (and its code)."""
    session.execute(
        update(JobShard)
        .where(JobShard.job_id == job_id, JobShard.index == index)
        .values(state=ShardState.FAILED.value, error=error[:2000], lease_expires_at=None, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    try:
        jobs.finish_job(
            session, job_id, JobState.FAILED, error=f"shard {index} failed: {error}", error_code=error_code
        )
    except jobs.InvalidTransition:
        pass  # already finished (cancelled, or failed by another shard)
    record_left_behind(session, job_id)


PROGRESS_STEPS = 100  # a job's progress row is written at most this many times over its shards


def _update_progress(session: Session, job_id: str) -> None:
    """Write the job's progress at every 1% of its shards (every shard of a job of 100 or fewer).

    Every worker finishing a shard of the same job would otherwise update that one job row, holding its
    row lock until commit: at cluster scale that serialized them all (bench/cluster_sim.py).
    """
    done, total = shard_counts(session, job_id)
    step = max(1, total // PROGRESS_STEPS)
    if done % step == 0 or done == total:
        jobs.set_progress(session, job_id, done / total if total else 1.0, f"{done}/{total} shards")


def shard_counts(session: Session, job_id: str) -> tuple[int, int]:
    """(shards done, shards in all) of a job."""
    rows = session.execute(shard_counts_statement(job_id)).all()
    counts = {state: n for state, n in rows}
    return counts.get(ShardState.DONE.value, 0), sum(counts.values())


def shard_counts_statement(job_id: str) -> Select[str, int]:
    """The query behind `shard_counts` (run at every completion), alone so a benchmark can EXPLAIN it."""
    return select(JobShard.state, func.count()).where(JobShard.job_id == job_id).group_by(JobShard.state)


def claim_finalizer(session: Session, job_id: str, worker: str, lease_seconds: float) -> bool:
    """Take the right to finalize a job whose shards are all done; exactly one caller ever gets it.

    A finalizer whose lease expired (it died) can be taken over; the reconciler triggers that.
    """
    now = utcnow()
    undone = (
        select(func.count())
        .select_from(JobShard)
        .where(JobShard.job_id == job_id, JobShard.state != ShardState.DONE.value)
        .scalar_subquery()
    )
    free = or_(Job.finalizer.is_(None), Job.lease_expires_at < now)
    claimed = execute_dml(
        session,
        update(Job)
        .where(Job.id == job_id, Job.state == JobState.RUNNING.value, free, undone == 0)
        .values(
            finalizer=worker,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            phase="finalizing",
            updated_at=now,
        )
        .execution_options(synchronize_session=False),
    )
    if claimed == 1:
        jobs.add_event(session, job_id, "finalizing", f"all shards done; finalizer {worker}")
    return claimed == 1


def list_shards(session: Session, job_id: str) -> Sequence[JobShard]:
    """A job's shards in index order."""
    return session.scalars(select(JobShard).where(JobShard.job_id == job_id).order_by(JobShard.index)).all()


def lost_shards(session: Session) -> Sequence[JobShard]:
    """Running shards whose worker's lease expired."""
    query = select(JobShard).where(
        JobShard.state == ShardState.RUNNING.value, JobShard.lease_expires_at < utcnow()
    )
    return session.scalars(query).all()


def pending_shards(session: Session, job_id: str) -> list[int]:
    """Indexes of a job's shards that wait for a worker."""
    query = select(JobShard.index).where(
        JobShard.job_id == job_id, JobShard.state == ShardState.PENDING.value
    )
    return list(session.scalars(query.order_by(JobShard.index)).all())


def unfinalized_jobs(session: Session) -> list[str]:
    """Running sampling jobs whose shards are all done but whose finalizer never ran or died."""
    undone = (
        select(func.count())
        .select_from(JobShard)
        .where(JobShard.job_id == Job.id, JobShard.state != ShardState.DONE.value)
        .scalar_subquery()
    )
    has_shards = select(func.count()).select_from(JobShard).where(JobShard.job_id == Job.id).scalar_subquery()
    free = or_(Job.finalizer.is_(None), Job.lease_expires_at < utcnow())
    query = select(Job.id).where(
        Job.state == JobState.RUNNING.value, Job.kind.in_(sharded_kinds()), undone == 0, has_shards > 0, free
    )
    return list(session.scalars(query).all())


LEFT_BEHIND_LISTED = 1000  # keys listed in a result; the totals always cover every shard


def left_behind(session: Session, job_id: str) -> dict[str, Any]:
    """The shards a stopped sampling job wrote (keys, bytes; from SQL) and how many are still being written.

    DELETE /v1/jobs/{id} removes them; until then they count toward the tenant's storage quota.
    """
    rows = session.execute(
        select(JobShard.key, JobShard.bytes)
        .where(JobShard.job_id == job_id, JobShard.state == ShardState.DONE.value)
        .order_by(JobShard.index)
    ).all()
    writing = session.scalar(
        select(func.count())
        .select_from(JobShard)
        .where(
            JobShard.job_id == job_id,
            JobShard.state == ShardState.RUNNING.value,
            JobShard.lease_expires_at >= utcnow(),
        )
    )
    return {
        "objects": [{"key": key, "bytes": size} for key, size in rows[:LEFT_BEHIND_LISTED]],
        "count": len(rows),
        "bytes": sum(size or 0 for _, size in rows),
        "truncated": len(rows) > LEFT_BEHIND_LISTED,
        "still_writing": int(writing or 0),
    }


def record_left_behind(session: Session, job_id: str) -> None:
    """Put a cancelled or failed sampling job's written shards into its result (`result.left_behind`)."""
    jobs.record_left_behind(session, job_id, left_behind(session, job_id))


def create_sampling_job(
    session: Session, params: dict[str, Any], *, tenant: str, kind: str = SAMPLE.name
) -> tuple[Job, int]:
    """Add a QUEUED job of a sharded kind (sampling) and its PENDING, unreleased shards; the caller
    commits, then releases the first ones (`broker.dispatch`). The job and its event are written at once
    (`jobs.insert_job`); the Job returned is not in the session."""
    reserved = int(params.get("planned_bytes") or 0)
    job = jobs.insert_job(session, kind, params, tenant=tenant, reserved_bytes=reserved)
    plan = plan_shards(params["counts"], params["shard_size"])
    create_shards(session, job.id, plan)
    return job, len(plan)


def pending_shards_of_live_jobs(session: Session) -> Sequence[Row[str, int, datetime]]:
    """(job id, index, updated at) of every released PENDING shard of a QUEUED or RUNNING job."""
    return session.execute(
        select(JobShard.job_id, JobShard.index, JobShard.updated_at)
        .join(Job, Job.id == JobShard.job_id)
        .where(
            JobShard.state == ShardState.PENDING.value,
            JobShard.released_at.is_not(None),
            Job.state.in_([JobState.QUEUED.value, JobState.RUNNING.value]),
        )
    ).all()


def touch_pending_shards(session: Session, job_id: str, indexes: list[int]) -> None:
    """Mark still-PENDING shards as just published (their messages sent again)."""
    session.execute(
        update(JobShard)
        .where(
            JobShard.job_id == job_id,
            JobShard.index.in_(indexes),
            JobShard.state == ShardState.PENDING.value,
        )
        .values(updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
