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
from typing import Any

from sqlalchemy import Select, and_, func, select, text, update
from sqlalchemy.orm import Session

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


def backlogs(session: Session, cap: int | None = None) -> list[Backlog]:
    """Every live job with undone shards: how many wait unreleased (at most `cap`) and how many fly."""
    rows = session.execute(backlogs_statement(cap)).all()
    return [
        Backlog(job_id, tenant, priority, created_at, int(waiting or 0), int(flying or 0))
        for job_id, tenant, priority, created_at, waiting, flying in rows
        if waiting or flying
    ]


def backlogs_statement(cap: int | None = None) -> Select[Any]:
    """The query behind `backlogs`, alone so a benchmark can EXPLAIN it.

    Per live job, two probes of the partial index `ix_job_shards_undone` (undone shards only, so the DONE
    history is never read): its in-flight shards (released, undone: at most the window in all) and its
    waiting ones, counted only up to `cap` (the dispatcher never takes more than the window's free slots).
    The cost of a dispatch then follows live jobs x window, not the backlog: aggregating every undone
    shard took 17 ms per dispatch, under the lock, with 30,000 shards waiting (bench/cluster_sim.py).
    """
    pending = and_(
        JobShard.job_id == Job.id,
        JobShard.state == ShardState.PENDING.value,
        JobShard.released_at.is_(None),
    )
    first = select(JobShard.index).where(pending).correlate(Job)
    if cap is not None:
        first = first.limit(cap)
    waiting = select(func.count()).select_from(first.subquery()).scalar_subquery()
    flying = (
        select(func.count())
        .where(JobShard.job_id == Job.id, JobShard.state.in_(UNDONE), JobShard.released_at.is_not(None))
        .scalar_subquery()
    )
    return select(Job.id, Job.tenant, Job.priority, Job.created_at, waiting, flying).where(
        Job.state.in_(LIVE)
    )


def release_next(
    session: Session, window: int, weights: Mapping[str, float] | None = None
) -> dict[str, list[int]]:
    """Release shards until `window` are in flight; {job id: shard indexes released}, in release order."""
    lock_dispatch(session)
    jobs = backlogs(session, cap=window)
    free = window - sum(b.in_flight for b in jobs)
    if free <= 0:
        return {}
    wanted: dict[str, int] = {}
    for job_id in choose_units(jobs, free, weights):
        wanted[job_id] = wanted.get(job_id, 0) + 1
    now = utcnow()
    released: dict[str, list[int]] = {}
    for job_id, n in wanted.items():
        marked = _release_first(session, job_id, n, now)
        if marked:
            released[job_id] = marked
    return released


def _release_first(session: Session, job_id: str, n: int, now: datetime) -> list[int]:
    """Mark the `n` lowest unreleased PENDING shards of a job released, in one statement; their indexes.

    One UPDATE ... RETURNING instead of a SELECT and one UPDATE per shard: the advisory lock is held for
    one round trip per job chosen, not one per shard. The `released_at IS NULL` guard stays on the UPDATE.
    """
    unreleased = and_(
        JobShard.job_id == job_id,
        JobShard.state == ShardState.PENDING.value,
        JobShard.released_at.is_(None),
    )
    first = select(JobShard.index).where(unreleased).order_by(JobShard.index).limit(n)
    indexes = session.scalars(
        update(JobShard)
        .where(unreleased, JobShard.index.in_(first))
        .values(released_at=now, updated_at=now)
        .returning(JobShard.index)
        .execution_options(synchronize_session=False)
    ).all()
    return sorted(indexes)


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
