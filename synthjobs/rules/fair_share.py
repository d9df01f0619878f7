"""Which sampling shards to release next: fair share over tenants, then priority, then age (pure).

Sampling jobs do not publish all their shards at submit; the dispatcher (`synthjobs.broker.dispatch`) keeps
at most a small window of shards published across all jobs and, whenever a unit of work ends, asks this
module which job gets each free slot. The choice is a deficit round-robin whose deficits are recomputed
from SQL each time instead of kept in memory: a tenant's deficit is its weighted share of the window
minus the shards it already has in flight, so the tenant furthest below its share is served first and no
dispatcher has state to lose. Within a tenant, the job of highest priority goes first, then the oldest.
The ordering is ours (it is what the issue asks for); nothing here knows SQL or Celery.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, get_args

# A job's priority within its tenant, lowest first; requests validate against this one list.
Priority = Literal["low", "normal", "high"]
PRIORITIES: tuple[str, ...] = get_args(Priority)
DEFAULT_PRIORITY: Priority = "normal"


def priority_rank(priority: str | None) -> int:
    """Higher runs first; an unknown or missing priority counts as normal (rows older than the column)."""
    name = priority or DEFAULT_PRIORITY
    return PRIORITIES.index(name) if name in PRIORITIES else PRIORITIES.index(DEFAULT_PRIORITY)


@dataclass(frozen=True)
class Backlog:
    """One live sharded job as the dispatcher sees it: shards still to release and shards in flight."""

    job_id: str
    tenant: str
    priority: str
    created_at: datetime
    waiting: int  # shards not yet released
    in_flight: int  # released and not yet done (published, or running)


def choose_units(
    backlogs: Sequence[Backlog], free: int, weights: Mapping[str, float] | None = None
) -> list[str]:
    """The job id of each of the next `free` shards to release, in release order (a job may repeat).

    Each slot goes to the tenant with waiting work whose in-flight shards are fewest per unit of weight
    (default weight 1); ties go to the tenant whose next job is oldest, then by name, so the
    choice is deterministic. Inside that tenant: highest priority, then oldest job, then job id.
    """
    weights = weights or {}
    waiting = {b.job_id: b.waiting for b in backlogs}
    in_flight: dict[str, int] = {}
    for b in backlogs:
        in_flight[b.tenant] = in_flight.get(b.tenant, 0) + b.in_flight
    by_tenant: dict[str, list[Backlog]] = {}
    for b in sorted(backlogs, key=lambda b: (-priority_rank(b.priority), b.created_at, b.job_id)):
        by_tenant.setdefault(b.tenant, []).append(b)
    chosen: list[str] = []
    while len(chosen) < free:
        ready = {t: job for t, jobs in by_tenant.items() if (job := _next_job(jobs, waiting)) is not None}
        if not ready:
            break
        tenant = min(
            ready,
            key=lambda t: (in_flight[t] / weights.get(t, 1.0), ready[t].created_at, t),
        )
        job = ready[tenant]
        chosen.append(job.job_id)
        waiting[job.job_id] -= 1
        in_flight[tenant] += 1
    return chosen


def _next_job(jobs: list[Backlog], waiting: Mapping[str, int]) -> Backlog | None:
    """The first of a tenant's jobs (already in priority-then-age order) with a shard still waiting."""
    return next((b for b in jobs if waiting[b.job_id] > 0), None)
