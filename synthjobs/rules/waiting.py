"""Why a job waits, in words a user can act on, and its place in line (pure; `ledger.waiting` counts).

A QUEUED training job sits in the train lane's FIFO queue behind the tenant's own earlier job-level jobs; a
sampling job's shards wait in SQL until the dispatcher releases them into the shard window (fair share over
tenants, then priority, then age: `rules.fair_share`), then in the sample lane until a worker is free.
Everything said here is about the caller's own tenant: other tenants appear only as "other tenants' work
in flight", which is what fair share implies anyway, never as a count.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WaitFacts:
    """What SQL says about one live job's wait, counted inside its tenant (the window's fill aside)."""

    sharded: bool
    started: bool  # RUNNING (a training job then no longer waits)
    ahead: int  # the tenant's live jobs of the same lane that go before it
    shards_waiting: int = 0  # this job's shards not yet released (sharded jobs)
    shards_released: int = 0  # released, not yet claimed by a worker
    shards_running: int = 0
    tenant_in_flight: int = 0  # the tenant's released, undone shards (all its jobs)
    window_full: bool = False  # the shard window (all tenants) has no free slot


@dataclass(frozen=True)
class Wait:
    """Why a job waits; `position` is 1 for the next of the tenant's jobs to go, None where meaningless."""

    reason: str
    position: int | None = None


def explain_wait(facts: WaitFacts) -> Wait | None:
    """The reason a job (or a running sampling job's remaining shards) waits; None when nothing waits."""
    if not facts.sharded:
        if facts.started:
            return None
        return _behind_yours(facts.ahead) or Wait("waiting for a free worker", 1)
    if facts.shards_waiting == 0:
        if facts.shards_released and not facts.shards_running:
            return Wait("waiting for a free worker")
        return None  # every shard is released and some run: the job is moving
    if facts.started and facts.shards_running:
        return None  # it has shards running; the rest follow as its share of the window frees up
    behind = _behind_yours(facts.ahead)
    if behind is not None:
        return behind
    if facts.shards_released:
        return Wait("waiting for a free worker", 1)
    if facts.window_full and facts.tenant_in_flight:
        return Wait(
            f"tenant at its share of the shard window ({facts.tenant_in_flight} shards of yours in flight)", 1
        )
    if facts.window_full:
        return Wait("waiting for the shard window: other tenants' work in flight, shared fairly", 1)
    return Wait("waiting for the dispatcher to release its shards", 1)


def _behind_yours(ahead: int) -> Wait | None:
    if ahead <= 0:
        return None
    noun = "job" if ahead == 1 else "jobs"
    return Wait(f"queued: {ahead} {noun} of yours ahead", ahead + 1)


def queued_eta(ahead: int, typical_run_seconds: float | None) -> float | None:
    """Seconds until a QUEUED job ends: the jobs ahead of it and its own run, each of typical length.

    `typical_run_seconds` is the tenant's recent mean for the kind (None: no history, no estimate).
    """
    if typical_run_seconds is None:
        return None
    return round((ahead + 1) * typical_run_seconds, 1)
