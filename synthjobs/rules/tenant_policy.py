"""One policy per tenant, read by both sides of sharing the service: the submit-time refusal and fair share.

Quotas (jobs in flight, submissions per minute, bytes stored) and fair-share weights are one mechanism seen
from two sides: a tenant's `TenantPolicy` says how much of the service it may hold (the limits, checked when
a job is created: `api/quota.py`, `ledger.quota` for the schedule tick) and how much of the running part it
is given when others compete (its weight, read by the dispatcher: `broker.dispatch` -> `rules.fair_share`).
Both are computed from the same ledger rows: a tenant's jobs in QUEUED/RUNNING (`ledger.quota`) and the
released, undone shards of those same live jobs (`ledger.dispatch`). The defaults come from the deployment's
settings; `SYNTHJOBS_TENANT_POLICIES` overrides them per tenant, e.g.
`{"acme": {"weight": 2, "max_concurrent_jobs": 50, "max_storage_bytes": 1099511627776}}`. Pure: no SQL here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from synthjobs.settings import Settings

MAX_WEIGHT = 1000.0
T = TypeVar("T", int, float)


class PolicyOverride(BaseModel):
    """The parts of one tenant's policy that differ from the deployment's defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    weight: float | None = Field(default=None, gt=0, le=MAX_WEIGHT)
    max_concurrent_jobs: int | None = Field(default=None, ge=1, le=10_000_000)
    max_submits_per_minute: int | None = Field(default=None, ge=1, le=10_000_000)
    max_storage_bytes: int | None = Field(default=None, ge=0, le=1 << 60)


@dataclass(frozen=True)
class TenantPolicy:
    """How much of the service one tenant may hold, and its share when tenants compete."""

    tenant: str
    weight: float  # fair-share weight of its sampling shards in the window (default 1)
    max_concurrent_jobs: int  # queued + running jobs
    max_submits_per_minute: int
    max_storage_bytes: int  # 0: no storage quota


@dataclass(frozen=True)
class OverQuota:
    """Why one more job is refused, and in about how many seconds it may be accepted."""

    message: str
    retry_after: int


def policy_for(settings: Settings, tenant: str) -> TenantPolicy:
    """The tenant's policy: its override where it has one, the deployment's defaults elsewhere.

    `SYNTHJOBS_TENANT_WEIGHTS` (the older, weight-only setting) still gives a weight; a policy's weight wins.
    """
    override = settings.tenant_policies.get(tenant) or PolicyOverride()
    return TenantPolicy(
        tenant=tenant,
        weight=_first(override.weight, settings.tenant_weights.get(tenant), 1.0),
        max_concurrent_jobs=_first(override.max_concurrent_jobs, settings.max_concurrent_jobs),
        max_submits_per_minute=_first(override.max_submits_per_minute, settings.max_submits_per_minute),
        max_storage_bytes=_first(override.max_storage_bytes, settings.max_storage_bytes_per_tenant),
    )


def weights(settings: Settings) -> dict[str, float]:
    """Every tenant's fair-share weight that is not the default 1 (the dispatcher's view of the policies)."""
    named = set(settings.tenant_weights) | set(settings.tenant_policies)
    return {tenant: policy_for(settings, tenant).weight for tenant in sorted(named)}


def refusal(policy: TenantPolicy, in_flight: int, recent: int) -> OverQuota | None:
    """Whether one more job would take a tenant with these counts past its policy's limits."""
    if in_flight >= policy.max_concurrent_jobs:
        message = f"{in_flight} jobs queued or running; the limit is {policy.max_concurrent_jobs}"
        return OverQuota(message, 30)
    if recent >= policy.max_submits_per_minute:
        return OverQuota(f"more than {policy.max_submits_per_minute} submissions in the last minute", 60)
    return None


def _first(*values: T | None) -> T:
    return next(value for value in values if value is not None)
