"""Per-tenant limits on jobs in flight, submissions per minute (`synthjobs.ledger.quota`) and bytes stored,
each the tenant's own policy's (`rules.tenant_policy`: the same policy whose weight fair share reads).

Counting a tenant's rows on every submit grew with the rows counted (0.8 ms at 1,000 queued jobs, 15 ms at
50,000), so each API process refreshes a tenant's counts from SQL at most once per REFRESH_SECONDS, counts
no further than the limit, and adds its own submissions in between. Limits are therefore exact within one
process and at most a second stale across processes.

The storage quota's sum (`tenant_usage`: every live job of the tenant and its shards) was half of a submit's
time at one client (bench/api_submit.py). A submit reads it the same way, refreshed at most once per
REFRESH_SECONDS with this process's own reservations added, but only while the tenant is far from its
quota: past EXACT_ABOVE of it every submit reads SQL, and a refusal is always decided on figures just read.
So a tenant near its quota is held to it exactly, and no submit is refused on a stale figure.
"""

from __future__ import annotations

import threading
import time

from fastapi import HTTPException
from sqlalchemy.orm import Session

from synthjobs.ledger import quota
from synthjobs.ledger.deletion import tenant_usage
from synthjobs.rules.tenant_policy import TenantPolicy, policy_for, refusal
from synthjobs.settings import Settings

REFRESH_SECONDS = 1.0
EXACT_ABOVE = 0.9  # of the storage quota: from there on every submit reads the tenant's usage from SQL


class QuotaGuard:
    """Answers 429 with Retry-After when a tenant is over its limits."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._counts: dict[str, tuple[float, int, int]] = {}  # tenant -> (read at, in flight, last minute)
        self._stored: dict[str, tuple[float, int]] = {}  # tenant -> (read at, bytes stored + reserved since)
        self._lock = threading.Lock()

    def check(self, session: Session, tenant: str) -> None:
        """Raise 429 if one more job would take `tenant` past a limit."""
        policy = policy_for(self.settings, tenant)
        refused = refusal(policy, *self._current(session, tenant, policy))
        if refused is not None:
            raise HTTPException(429, refused.message, headers={"Retry-After": str(refused.retry_after)})

    def check_storage(self, session: Session, tenant: str, needed: int = 0) -> None:
        """`check_storage` for a submit, on the tenant's usage as last read unless it is near its quota."""
        limit = policy_for(self.settings, tenant).max_storage_bytes
        if limit <= 0:
            return
        with self._lock:
            cached = self._stored.get(tenant)
        if (
            cached is not None
            and time.monotonic() - cached[0] < REFRESH_SECONDS
            and cached[1] + max(needed, 1) <= EXACT_ABOVE * limit
        ):
            return
        used = check_storage(session, tenant, self.settings, needed)
        with self._lock:
            self._stored[tenant] = (time.monotonic(), used)

    def record(self, tenant: str, reserved_bytes: int = 0) -> None:
        """Count a job this process just created (and what it reserved), until a refresh reads it from SQL."""
        with self._lock:
            read_at, in_flight, recent = self._counts.get(tenant, (0.0, 0, 0))
            self._counts[tenant] = (read_at, in_flight + 1, recent + 1)
            if (stored := self._stored.get(tenant)) is not None:
                self._stored[tenant] = (stored[0], stored[1] + reserved_bytes)

    def _current(self, session: Session, tenant: str, policy: TenantPolicy) -> tuple[int, int]:
        with self._lock:
            cached = self._counts.get(tenant)
        if cached is not None and time.monotonic() - cached[0] < REFRESH_SECONDS:
            return cached[1], cached[2]
        in_flight = quota.count_in_flight(session, tenant, policy.max_concurrent_jobs)
        recent = quota.count_recent(session, tenant, policy.max_submits_per_minute)
        with self._lock:
            self._counts[tenant] = (time.monotonic(), in_flight, recent)
        return in_flight, recent


def check_storage(session: Session, tenant: str, settings: Settings, needed: int = 0) -> int:
    """Refuse a submission or upload that would take `tenant` past its storage quota, with the figures.

    413 when the request alone (`needed` bytes) is larger than the whole quota: no deletion can make room.
    429 when the tenant's stored bytes plus `needed` pass the quota: deleting jobs (DELETE /v1/jobs/{id})
    or datasets makes room; there is no Retry-After because waiting alone does not.

    Returns the bytes the tenant stores (read from SQL now; 0 when it has no quota).
    """
    limit = policy_for(settings, tenant).max_storage_bytes
    if limit <= 0:
        return 0
    if needed > limit:
        message = (
            f"this request needs about {needed} bytes of storage, more than the tenant's quota of {limit} "
            "bytes (SYNTHJOBS_MAX_STORAGE_BYTES_PER_TENANT)"
        )
        raise HTTPException(413, message)
    used = tenant_usage(session, tenant)
    if used + max(needed, 1) > limit:  # a training job's size is unknown, but it stores something
        message = (
            f"storage quota exceeded: the tenant stores {used} bytes of its {limit}-byte quota and this "
            f"request needs about {needed} more; delete jobs (DELETE /v1/jobs/{{id}}) to make room"
        )
        raise HTTPException(429, message)
    return used
