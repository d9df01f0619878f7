"""Idempotency keys: replayed for the same request, refused for another, forgotten after their time."""

from __future__ import annotations

from datetime import timedelta

import pytest

from synthjobs.ledger import idempotency
from synthjobs.ledger.db import session_scope
from synthjobs.ledger.tables import IdempotencyKey, utcnow


def test_same_key_replays_and_a_different_request_conflicts(database_url: str) -> None:
    with session_scope(database_url) as session:
        idempotency.remember(session, "acme", "k1", "digest-a", "job", "job-1")
    with session_scope(database_url) as session:
        assert idempotency.replay(session, "acme", "k1", "digest-a") == "job-1"
        assert idempotency.replay(session, "globex", "k1", "digest-a") is None, "keys are per tenant"
        with pytest.raises(idempotency.IdempotencyConflict):
            idempotency.replay(session, "acme", "k1", "digest-b")


def test_keys_are_kept_at_least_a_day_then_purged(database_url: str) -> None:
    with session_scope(database_url) as session:
        idempotency.remember(session, "acme", "old", "d", "job", "job-1")
        idempotency.remember(session, "acme", "new", "d", "job", "job-2")
        session.get(IdempotencyKey, ("acme", "old")).created_at = utcnow() - timedelta(hours=49)  # type: ignore[union-attr]
        session.get(IdempotencyKey, ("acme", "new")).created_at = utcnow() - timedelta(hours=23)  # type: ignore[union-attr]
    with session_scope(database_url) as session:
        assert idempotency.purge(session, hours=1) == 1, "asking for 1 h still keeps 24 h"
    with session_scope(database_url) as session:
        assert idempotency.replay(session, "acme", "new", "d") == "job-2"
        assert idempotency.replay(session, "acme", "old", "d") is None
