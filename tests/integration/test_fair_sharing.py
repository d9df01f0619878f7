"""Fair sharing on the real stack: a bounded wait behind another tenant's bulk job, interleaved tenants,
and priority within a tenant — asserted on the ledger's order of events, not on wall-clock thresholds."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from synthjobs.ledger.db import session_scope
from synthjobs.ledger.tables import Job, JobShard
from synthjobs.ledger.tokens import create_token
from synthjobs_client.client import Client

pytestmark = pytest.mark.integration

WINDOW = 2


def _succeeded(client: Any, stack: Any, job_id: str) -> dict[str, Any]:
    try:
        return dict(client.wait(job_id, timeout=300, poll=0.2, max_poll=1.0))
    except Exception as exc:
        pytest.fail(f"job {job_id} did not succeed: {exc}\n{stack.log_tail()}")


def _done_times(url: str, job_id: str) -> dict[int, datetime]:
    with session_scope(url) as session:
        rows = session.query(JobShard).filter(JobShard.job_id == job_id).all()
        return {row.index: row.updated_at for row in rows}


def test_other_tenants_and_higher_priorities_do_not_wait_for_a_bulk_job(
    start_stack, postgres_url: str, redis_url: str
) -> None:  # type: ignore[no-untyped-def]
    stack = start_stack(
        database_url=postgres_url, broker_url=redis_url, extra_env={"SYNTHJOBS_SHARD_WINDOW": str(WINDOW)}
    )
    with session_scope(postgres_url) as session:
        token = create_token(session, "tenant-b")
    other = Client(stack.api_url, token=token)
    try:
        train = {"dataset": "digits", "hyperparameters": {"epochs": 2}}
        # Models belong to their tenant: each trains its own; then no worker runs while jobs are submitted.
        models = [
            _succeeded(c, stack, c.submit_train(train)["id"])["result"]["model_id"]
            for c in (stack.client, other)
        ]
        stack.stop_workers()
        sample = {"model": models[0], "shard_size": 10, "seed": 3, "quality_samples": 0}
        # Tenant "default" submits a bulk job first, then tenant B a training job and a sampling job, then
        # tenant "default" a small high-priority job.
        bulk = stack.client.submit_sample({**sample, "per_class": 10})["id"]  # 10 shards
        b_train = other.submit_train({"dataset": "digits", "hyperparameters": {"epochs": 1}})["id"]
        b_sample = other.submit_sample({**sample, "model": models[1], "per_class": 3})["id"]  # 3 shards
        urgent = stack.client.submit_sample({**sample, "per_class": 2, "priority": "high"})["id"]
        assert stack.client.get(urgent)["priority"] == "high"
        stack.start_worker()
        for client, job_id in (
            (stack.client, bulk),
            (other, b_train),
            (other, b_sample),
            (stack.client, urgent),
        ):
            _succeeded(client, stack, job_id)
    finally:
        other.close()

    bulk_done = _done_times(postgres_url, bulk)
    b_done = _done_times(postgres_url, b_sample)
    urgent_done = _done_times(postgres_url, urgent)
    with session_scope(postgres_url) as session:
        b_started = session.get(Job, b_train).started_at
        released = {
            (row.job_id, row.index): row.released_at
            for row in session.query(JobShard).filter(JobShard.job_id.in_([bulk, urgent])).all()
        }
    assert len(bulk_done) > 4 * WINDOW
    # Bounded wait: B's training started behind at most the window of bulk shards (plus the one running).
    assert sum(t < b_started for t in bulk_done.values()) <= WINDOW + 1
    # Fair share: B's sampling job finished while the bulk job still had most of its shards to run.
    assert sum(t < max(b_done.values()) for t in bulk_done.values()) <= len(b_done) + WINDOW + 1
    # Priority: every shard of the urgent job was released before the bulk job's shards not yet released.
    held_back = [t for (job, index), t in released.items() if job == bulk and index >= WINDOW]
    assert max(t for (job, _), t in released.items() if job == urgent) < min(held_back)
    assert max(urgent_done.values()) < max(bulk_done.values())
