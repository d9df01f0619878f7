"""The worker's own release (the one made as each shard completes) weighs tenants by their policies.

Nearly every release is made there, so a weight set only in `SYNTHJOBS_TENANT_POLICIES` must count there as
at submit and in the reconciler (`tenant_policy.weights`), not only `SYNTHJOBS_TENANT_WEIGHTS`.
"""

from __future__ import annotations

from pathlib import Path

from synthjobs.ledger import dispatch, jobs, shards
from synthjobs.ledger.db import session_scope
from synthjobs.ledger.tables import JobKind
from synthjobs.settings import Settings
from worker import tasks

OUTCOME = {"key": "k", "sha256": "0" * 64, "size": 1, "seconds": 0.1, "quality": {}}


def _sampling_job(url: str, tenant: str, n: int) -> str:
    with session_scope(url) as session:
        job = jobs.create_job(session, JobKind.SAMPLE, {"counts": [n]}, tenant=tenant)
        shards.create_shards(session, job.id, [[1]] * n)
        return job.id


def test_a_completion_releases_by_the_tenant_policies_weights(database_url: str, tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path / "home",
        database_url=database_url,
        shard_window=4,
        tenant_policies={"A": {"weight": 3}},
    )
    a, b = _sampling_job(database_url, "A", 20), _sampling_job(database_url, "B", 20)
    with session_scope(database_url) as session:
        assert dispatch.release_next(session, 4) == {a: [0, 1], b: [0, 1]}
        assert shards.claim_shard(session, b, 0, "w", 60, 5) is not None
    with session_scope(database_url) as session:
        recorded, released = tasks._complete_and_release(session, b, 0, "w", OUTCOME, settings)
    # In flight: A 2 (2/3 of its weight), B 1. Unweighted B would get the slot; A's weight 3 gives it to A.
    assert recorded
    assert released == {a: [2]}
