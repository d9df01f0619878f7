"""The SQL side of releasing sampling shards: which are in flight, which wait, and marking the released.

A shard is *released* when `job_shards.released_at` is set: from then on a message for it is (or was)
published, and the reconciler republishes it if that message is lost. Unreleased shards wait in SQL only;
`release_next` fills the window (`SYNTHJOBS_SHARD_WINDOW`: released shards not yet done, over all live
jobs) with the shards `rules.fair_share` picks. The caller commits, then publishes.

Dispatchers run concurrently (every worker finishing a shard is one), so the read-choose-mark step is
serialized: PostgreSQL by a transaction-scoped advisory lock, SQLite by taking its single write lock first.
Marking is a guarded UPDATE (`released_at IS NULL`) as well, so a shard is never released twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import and_, case, func, select, text, update
from sqlalchemy.orm import Session

from synthjobs.ledger.db import execute_dml
from synthjobs.ledger.tables import Job, JobShard, JobState, ShardState, utcnow
from synthjobs.rules.fair_share import Backlog, choose_units

# Any constant both sides agree on; it names the dispatcher's lock among the database's advisory locks.
DISPATCH_LOCK = 0x5E1EA5E
LIVE = (JobState.QUEUED.value, JobState.RUNNING.value)
UNDONE = (ShardState.PENDING.value, ShardState.RUNNING.value)


def lock_dispatch(session: Session) -> None:
    """Hold the dispatcher's lock until this transaction ends, so two dispatchers never overfill."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(DISPATCH_LOCK)))
    else:  # SQLite: a write takes its one write lock (waiting on busy_timeout) before anything is read
        session.execute(text("UPDATE jobs SET id = id WHERE 1 = 0"))


def backlogs(session: Session) -> list[Backlog]:
    """Every live job with undone shards: how many wait unreleased and how many are in flight."""
    unreleased = JobShard.released_at.is_(None)
    rows = session.execute(
        select(
            Job.id,
            Job.tenant,
            Job.priority,
            Job.created_at,
            func.sum(case((and_(unreleased, JobShard.state == ShardState.PENDING.value), 1), else_=0)),
            func.sum(case((unreleased, 0), else_=1)),
        )
        .join(JobShard, JobShard.job_id == Job.id)
        .where(Job.state.in_(LIVE), JobShard.state.in_(UNDONE))
        .group_by(Job.id, Job.tenant, Job.priority, Job.created_at)
    ).all()
    return [
        Backlog(job_id, tenant, priority, created_at, int(waiting or 0), int(flying or 0))
        for job_id, tenant, priority, created_at, waiting, flying in rows
    ]


def release_next(
    session: Session, window: int, weights: Mapping[str, float] | None = None
) -> dict[str, list[int]]:
    """Release shards until `window` are in flight; {job id: shard indexes released}, in release order."""
    lock_dispatch(session)
    jobs = backlogs(session)
    free = window - sum(b.in_flight for b in jobs)
    if free <= 0:
        return {}
    wanted: dict[str, int] = {}
    for job_id in choose_units(jobs, free, weights):
        wanted[job_id] = wanted.get(job_id, 0) + 1
    released: dict[str, list[int]] = {}
    now = utcnow()
    for job_id, n in wanted.items():
        indexes = list(
            session.scalars(
                select(JobShard.index)
                .where(
                    JobShard.job_id == job_id,
                    JobShard.state == ShardState.PENDING.value,
                    JobShard.released_at.is_(None),
                )
                .order_by(JobShard.index)
                .limit(n)
            ).all()
        )
        marked = [i for i in indexes if _mark_released(session, job_id, i, now)]
        if marked:
            released[job_id] = marked
    return released


def _mark_released(session: Session, job_id: str, index: int, now: datetime) -> bool:
    changed = execute_dml(
        session,
        update(JobShard)
        .where(JobShard.job_id == job_id, JobShard.index == index, JobShard.released_at.is_(None))
        .values(released_at=now, updated_at=now)
        .execution_options(synchronize_session=False),
    )
    return changed == 1


def in_flight(session: Session) -> int:
    """Released shards of live jobs not yet done (what the window counts)."""
    return int(
        session.scalar(
            select(func.count())
            .select_from(JobShard)
            .join(Job, Job.id == JobShard.job_id)
            .where(Job.state.in_(LIVE), JobShard.state.in_(UNDONE), JobShard.released_at.is_not(None))
        )
        or 0
    )
