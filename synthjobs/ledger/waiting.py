"""The SQL counts behind "why does my job wait" (`rules.waiting` words them).

Every count is inside the job's own tenant except one yes/no: whether the shard window (shared by all
tenants) is full. Counts stop at AHEAD_LIMIT rows (`quota.bounded_count`): past it the position is "at
least", and reading a huge backlog on every GET would cost more than the answer is worth.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session

from synthjobs.ledger.dispatch import LIVE, UNDONE, in_flight
from synthjobs.ledger.quota import bounded_count
from synthjobs.ledger.stats import seconds_between
from synthjobs.ledger.tables import Job, JobShard, JobState, ShardState
from synthjobs.rules.fair_share import PRIORITIES, priority_rank
from synthjobs.rules.kinds import is_sharded, job_level_kinds, sharded_kinds
from synthjobs.rules.waiting import Wait, WaitFacts, explain_wait, queued_eta

AHEAD_LIMIT = 10_000
TYPICAL_RUNS = 20  # the tenant's last finished runs of a kind that its typical duration is the mean of


def job_wait(session: Session, job: Job, shard_window: int) -> tuple[Wait | None, float | None]:
    """Why a live job waits and, for a QUEUED one, an ETA that counts the jobs ahead; (None, None) else."""
    if job.state not in LIVE:
        return None, None
    facts = wait_facts(session, job, shard_window)
    wait = explain_wait(facts)
    eta = None
    if job.state == JobState.QUEUED.value:
        eta = queued_eta(facts.ahead, typical_run_seconds(session, job.tenant, job.kind))
    return wait, eta


def wait_facts(session: Session, job: Job, shard_window: int) -> WaitFacts:
    """The counts `rules.waiting.explain_wait` reads, for one live job."""
    started = job.state == JobState.RUNNING.value
    if not is_sharded(job.kind):
        ahead = bounded_count(
            session,
            (
                Job.tenant == job.tenant,
                Job.state == JobState.QUEUED.value,
                Job.kind.in_(job_level_kinds()),
                _older(job),  # the train lane is one FIFO queue: priority orders sharded work only
            ),
            AHEAD_LIMIT,
        )
        return WaitFacts(sharded=False, started=started, ahead=0 if started else ahead)
    waiting, released, running = _own_shards(session, job.id)
    return WaitFacts(
        sharded=True,
        started=started,
        ahead=_sharded_ahead(session, job) if waiting else 0,
        shards_waiting=waiting,
        shards_released=released,
        shards_running=running,
        tenant_in_flight=_tenant_in_flight(session, job.tenant) if waiting else 0,
        window_full=bool(waiting) and in_flight(session) >= shard_window,
    )


def _older(job: Job) -> ColumnElement[bool]:
    """Rows submitted before `job` (ties broken by id, as the dispatcher does)."""
    return or_(Job.created_at < job.created_at, and_(Job.created_at == job.created_at, Job.id < job.id))


def _before(job: Job) -> ColumnElement[bool]:
    """Rows that go before `job` in dispatch order: higher priority, or the same and older."""
    higher = [p for p in PRIORITIES if priority_rank(p) > priority_rank(job.priority)]
    return or_(Job.priority.in_(higher), and_(Job.priority == job.priority, _older(job)))


def _sharded_ahead(session: Session, job: Job) -> int:
    """The tenant's live sharded jobs that go before `job` and still have shards to release."""
    has_waiting = (
        select(JobShard.job_id)
        .where(
            JobShard.job_id == Job.id,
            JobShard.state == ShardState.PENDING.value,
            JobShard.released_at.is_(None),
        )
        .exists()
    )
    conditions = (
        Job.tenant == job.tenant,
        Job.state.in_(LIVE),
        Job.kind.in_(sharded_kinds()),
        Job.id != job.id,
        _before(job),
        has_waiting,
    )
    return bounded_count(session, conditions, AHEAD_LIMIT)


def _own_shards(session: Session, job_id: str) -> tuple[int, int, int]:
    """(unreleased pending, released pending, running) shards of one job."""
    rows = session.execute(
        select(JobShard.state, JobShard.released_at.is_not(None), func.count())
        .where(JobShard.job_id == job_id, JobShard.state.in_(UNDONE))
        .group_by(JobShard.state, JobShard.released_at.is_not(None))
    ).all()
    waiting = released = running = 0
    for state, is_released, count in rows:
        if state == ShardState.RUNNING.value:
            running += count
        elif is_released:
            released += count
        else:
            waiting += count
    return waiting, released, running


def _tenant_in_flight(session: Session, tenant: str) -> int:
    """The tenant's released, undone shards of live jobs (its part of the window)."""
    return int(
        session.scalar(
            select(func.count())
            .select_from(JobShard)
            .join(Job, Job.id == JobShard.job_id)
            .where(
                Job.tenant == tenant,
                Job.state.in_(LIVE),
                JobShard.state.in_(UNDONE),
                JobShard.released_at.is_not(None),
            )
        )
        or 0
    )


def typical_run_seconds(session: Session, tenant: str, kind: str) -> float | None:
    """Mean run time of the tenant's last TYPICAL_RUNS succeeded jobs of `kind`; None without history."""
    recent = (
        select(seconds_between(session, Job.started_at, Job.finished_at).label("seconds"))
        .where(
            Job.tenant == tenant,
            Job.kind == kind,
            Job.state == JobState.SUCCEEDED.value,
            Job.started_at.is_not(None),
            Job.finished_at.is_not(None),
        )
        .order_by(Job.finished_at.desc())
        .limit(TYPICAL_RUNS)
        .subquery()
    )
    mean = session.scalar(select(func.avg(recent.c.seconds)))
    return None if mean is None else max(0.0, float(mean))
