"""Idempotency keys: a script may retry a POST with the same `Idempotency-Key` and get the original back.

A key is scoped to its tenant and stored in the same transaction as what the request created, under a
primary key (tenant, key): of twenty concurrent identical requests exactly one commits, the others find its
record and answer with the same resource. The same key with a different request is a conflict.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session

from synthjobs.errors import SynthJobsError
from synthjobs.ledger.db import execute_dml
from synthjobs.ledger.tables import IdempotencyKey, utcnow


class IdempotencyConflict(SynthJobsError):
    """The Idempotency-Key was used before with a different request."""


def digest(*parts: bytes | str) -> str:
    """A fingerprint of a request (method, path, body...)."""
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(part.encode() if isinstance(part, str) else part)
        hasher.update(b"\0")
    return hasher.hexdigest()


def replay(session: Session, tenant: str, key: str, request_sha256: str) -> str | None:
    """The id of what this key created before, or None; IdempotencyConflict for another request."""
    row = session.get(IdempotencyKey, (tenant, key))
    if row is None:
        return None
    if row.request_sha256 != request_sha256:
        raise IdempotencyConflict("this Idempotency-Key was used with a different request")
    return row.resource_id


def remember(
    session: Session, tenant: str, key: str, request_sha256: str, resource: str, resource_id: str
) -> None:
    """Record what the key created; flushed now so a concurrent twin fails at commit, not later."""
    session.add(
        IdempotencyKey(
            tenant=tenant, key=key, request_sha256=request_sha256, resource=resource, resource_id=resource_id
        )
    )
    session.flush()


def purge(session: Session, hours: float) -> int:
    """Forget keys older than `hours` (at least 24 h are kept)."""
    cutoff = utcnow() - timedelta(hours=max(hours, 24))
    return execute_dml(session, delete(IdempotencyKey).where(IdempotencyKey.created_at < cutoff))
