"""The per-tenant job quota: jobs in flight and submissions per minute, counted in SQL against the tenant's
policy (`rules.tenant_policy`, whose weight the dispatcher reads from the same live jobs).

One rule for every way a job is created. The API's submit guard (`api/quota.py`) caches these counts per
process; the schedule tick runs in another process (a worker or `synthjobs tick`) and counts afresh in the
transaction that would create the job, so a firing over quota is recorded as skipped instead of queued.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from synthjobs.ledger.tables import Job, JobState, utcnow
from synthjobs.rules.tenant_policy import OverQuota, policy_for, refusal
from synthjobs.settings import Settings

__all__ = ["OverQuota", "bounded_count", "count_in_flight", "count_recent", "over_quota"]

IN_FLIGHT_STATES = (JobState.QUEUED.value, JobState.RUNNING.value)


def count_in_flight(session: Session, tenant: str, limit: int) -> int:
    """The tenant's queued and running jobs, counted no further than `limit`."""
    return bounded_count(session, (Job.tenant == tenant, Job.state.in_(IN_FLIGHT_STATES)), limit)


def count_recent(session: Session, tenant: str, limit: int) -> int:
    """The tenant's jobs created in the last minute, counted no further than `limit`."""
    since = utcnow() - timedelta(minutes=1)
    return bounded_count(session, (Job.tenant == tenant, Job.created_at > since), limit)


def over_quota(session: Session, tenant: str, settings: Settings) -> OverQuota | None:
    """The tenant's policy's refusal (`rules.tenant_policy`) for its counts as SQL holds them now."""
    policy = policy_for(settings, tenant)
    in_flight = count_in_flight(session, tenant, policy.max_concurrent_jobs)
    recent = count_recent(session, tenant, policy.max_submits_per_minute)
    return refusal(policy, in_flight, recent)


def bounded_count(session: Session, conditions: tuple, limit: int) -> int:  # type: ignore[type-arg]
    """COUNT(*) that stops at `limit` rows: the answer past the limit does not matter, its cost would."""
    inner = select(Job.id).where(*conditions).limit(limit).subquery()
    return int(session.scalar(select(func.count()).select_from(inner)) or 0)
