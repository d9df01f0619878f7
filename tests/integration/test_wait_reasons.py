"""`GET /v1/jobs/{id}` says why a job waits and its place in line, counted inside the caller's tenant only;
once a real worker has run the jobs nothing waits."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from synthjobs.ledger.db import session_scope
from synthjobs.ledger.tokens import create_token
from synthjobs_client.client import Client

pytestmark = pytest.mark.integration

TRAIN = {"dataset": "digits", "hyperparameters": {"epochs": 1}}


def test_queued_jobs_say_how_many_of_yours_are_ahead_and_never_count_other_tenants(
    start_stack, postgres_url: str, redis_url: str
) -> None:  # type: ignore[no-untyped-def]
    stack = start_stack(workers=0, database_url=postgres_url, broker_url=redis_url)
    with session_scope(postgres_url) as session:
        token = create_token(session, "tenant-b")
    other = Client(stack.api_url, token=token)
    try:
        theirs = other.submit_train(TRAIN)["id"]  # another tenant's job, first in the queue
        mine = [stack.client.submit_train(TRAIN)["id"] for _ in range(3)]
        waits = [stack.client.get(job_id)["wait"] for job_id in mine]
        assert waits == [
            {"reason": "waiting for a free worker", "position": 1},
            {"reason": "queued: 1 job of yours ahead", "position": 2},
            {"reason": "queued: 2 jobs of yours ahead", "position": 3},
        ]
        assert other.get(theirs)["wait"] == {"reason": "waiting for a free worker", "position": 1}
        stack.start_worker(ready_timeout=60)
        for client, job_id in ((other, theirs), *((stack.client, j) for j in mine)):
            done = client.wait(job_id, timeout=300, poll=0.2, max_poll=1.0)
            assert done["state"] == "SUCCEEDED" and done.get("wait") is None, stack.log_tail()
    finally:
        other.close()
    # /metrics: each started job's submit -> first claim wait, per tenant.
    counts = _wait_counts(httpx.get(f"{stack.api_url}/metrics", timeout=30).text)
    assert counts[("default", "job")] == 3 and counts[("tenant-b", "job")] == 1, counts


def _wait_counts(text: str) -> dict[tuple[str, str], float]:
    family = next(f for f in text_string_to_metric_families(text) if f.name == "synthjobs_queue_wait_seconds")
    return {
        (s.labels["tenant"], s.labels["stage"]): s.value for s in family.samples if s.name.endswith("_count")
    }
