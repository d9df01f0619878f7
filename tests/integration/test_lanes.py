"""Lanes on the real stack: a worker started with `--queues train` (SYNTHJOBS_WORKER_QUEUES) never takes a
sampling shard; a sample-lane worker runs them."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from synthjobs.ledger.db import session_scope
from synthjobs.ledger.tables import JobShard

pytestmark = pytest.mark.integration


def _succeeded(stack: Any, job_id: str) -> dict[str, Any]:
    try:
        return dict(stack.client.wait(job_id, timeout=300, poll=0.2, max_poll=1.0))
    except Exception as exc:
        pytest.fail(f"job {job_id} did not succeed: {exc}\n{stack.log_tail()}")


def _shard_states(url: str, job_id: str) -> list[str]:
    with session_scope(url) as session:
        return [row.state for row in session.query(JobShard).filter(JobShard.job_id == job_id).all()]


def test_a_train_lane_worker_does_not_take_sampling_shards(
    start_stack, postgres_url: str, redis_url: str
) -> None:  # type: ignore[no-untyped-def]
    stack = start_stack(workers=0, database_url=postgres_url, broker_url=redis_url)
    stack.start_worker({"SYNTHJOBS_WORKER_QUEUES": "train"}, ready_timeout=60)
    train = {"dataset": "digits", "hyperparameters": {"epochs": 1}}
    model = _succeeded(stack, stack.client.submit_train(train)["id"])["result"]["model_id"]
    sample = stack.client.submit_sample(
        {"model": model, "per_class": 1, "shard_size": 5, "quality_samples": 0}
    )
    # A training job submitted after the sampling job runs; the shards stay untouched meanwhile.
    _succeeded(stack, stack.client.submit_train(train)["id"])
    states = _shard_states(postgres_url, sample["id"])
    assert states and set(states) == {"PENDING"}, states
    assert stack.client.get(sample["id"])["state"] == "QUEUED"
    stack.start_worker({"SYNTHJOBS_WORKER_QUEUES": "sample"}, ready_timeout=60)
    _succeeded(stack, sample["id"])
    # /metrics: every shard's release -> claim wait, under its tenant.
    text = httpx.get(f"{stack.api_url}/metrics", timeout=30).text
    family = next(f for f in text_string_to_metric_families(text) if f.name == "synthjobs_queue_wait_seconds")
    count = next(
        s.value for s in family.samples if s.name.endswith("_count") and s.labels["stage"] == "shard"
    )
    assert count == len(states)
