"""The per-tenant job quota: jobs in flight and submissions per minute, counted in SQL.

One rule for every way a job is created. The API's submit guard (`api/quota.py`) caches these counts per
process; the schedule tick runs in another process (a worker or `synthjobs tick`) and counts afresh in the
transaction that would create the job, so a firing over quota is recorded as skipped instead of queued.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from synthjobs.ledger.tables import Job, JobState, utcnow
from synthjobs.settings import Settings

IN_FLIGHT_STATES = (JobState.QUEUED.value, JobState.RUNNING.value)


@dataclass(frozen=True)
class OverQuota:
    """Why one more job is refused, and in about how many seconds it may be accepted."""

    message: str
    retry_after: int


def count_in_flight(session: Session, tenant: str, limit: int) -> int:
    """The tenant's queued and running jobs, counted no further than `limit`."""
    return bounded_count(session, (Job.tenant == tenant, Job.state.in_(IN_FLIGHT_STATES)), limit)


def count_recent(session: Session, tenant: str, limit: int) -> int:
    """The tenant's jobs created in the last minute, counted no further than `limit`."""
    since = utcnow() - timedelta(minutes=1)
    return bounded_count(session, (Job.tenant == tenant, Job.created_at > since), limit)


def refusal(in_flight: int, recent: int, settings: Settings) -> OverQuota | None:
    """Whether one more job would take a tenant with these counts past a limit."""
    if in_flight >= settings.max_concurrent_jobs:
        message = f"{in_flight} jobs queued or running; the limit is {settings.max_concurrent_jobs}"
        return OverQuota(message, 30)
    if recent >= settings.max_submits_per_minute:
        return OverQuota(f"more than {settings.max_submits_per_minute} submissions in the last minute", 60)
    return None


def over_quota(session: Session, tenant: str, settings: Settings) -> OverQuota | None:
    """`refusal` for the tenant's counts as SQL holds them now."""
    in_flight = count_in_flight(session, tenant, settings.max_concurrent_jobs)
    recent = count_recent(session, tenant, settings.max_submits_per_minute)
    return refusal(in_flight, recent, settings)


def bounded_count(session: Session, conditions: tuple, limit: int) -> int:  # type: ignore[type-arg]
    """COUNT(*) that stops at `limit` rows: the answer past the limit does not matter, its cost would."""
    inner = select(Job.id).where(*conditions).limit(limit).subquery()
    return int(session.scalar(select(func.count()).select_from(inner)) or 0)
