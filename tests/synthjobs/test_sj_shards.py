"""Shards of sampling jobs in SQL: claims, completion, and a finalizer that runs exactly once."""

from __future__ import annotations

import threading

from synthjobs.ledger import jobs, shards
from synthjobs.ledger.db import session_scope
from synthjobs.ledger.tables import JobKind, JobState, ShardState


def _sampling_job(url: str, plan: list[list[int]]) -> str:
    with session_scope(url) as session:
        job = jobs.create_job(session, JobKind.SAMPLE, {"counts": [sum(c) for c in zip(*plan, strict=True)]})
        shards.create_shards(session, job.id, plan)
        return job.id


def _complete(url: str, job_id: str, index: int, worker: str = "w1") -> bool:
    with session_scope(url) as session:
        assert shards.claim_shard(session, job_id, index, worker, 60, 5) is not None
        quality = {"scored": [1, 1], "correct": [1, 0]}
        key = shards.shard_key(job_id, index, "npz")
        return shards.complete_shard(
            session, job_id, index, worker, key=key, sha256="0" * 64, size=10, seconds=0.1, quality=quality
        )


def test_first_shard_claim_starts_the_job_and_a_second_claim_of_it_does_nothing(database_url: str) -> None:
    job_id = _sampling_job(database_url, [[2, 1], [1, 2]])
    with session_scope(database_url) as session:
        assert shards.claim_shard(session, job_id, 0, "w1", 60, 5) is not None
        assert shards.claim_shard(session, job_id, 0, "w2", 60, 5) is None
        assert jobs.get_job(session, job_id).state == JobState.RUNNING.value


def test_finalizer_is_claimed_once_and_only_when_every_shard_is_done(database_url: str) -> None:
    job_id = _sampling_job(database_url, [[2, 1], [1, 2], [1, 1]])
    assert _complete(database_url, job_id, 0) and _complete(database_url, job_id, 1)
    with session_scope(database_url) as session:
        assert not shards.claim_finalizer(session, job_id, "early", 60)
        assert shards.shard_counts(session, job_id) == (2, 3)
    assert _complete(database_url, job_id, 2)

    winners: list[str] = []

    def race(name: str) -> None:
        with session_scope(database_url) as session:
            if shards.claim_finalizer(session, job_id, name, 60):
                winners.append(name)

    threads = [threading.Thread(target=race, args=(f"w{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1
    with session_scope(database_url) as session:
        assert jobs.get_job(session, job_id).progress == 1.0
        assert shards.unfinalized_jobs(session) == []


def test_shard_of_a_cancelled_job_is_not_claimed(database_url: str) -> None:
    job_id = _sampling_job(database_url, [[1, 1], [1, 1]])
    with session_scope(database_url) as session:
        jobs.cancel_job(session, job_id)
    with session_scope(database_url) as session:
        assert shards.claim_shard(session, job_id, 1, "w1", 60, 5) is None
        assert [s.state for s in shards.list_shards(session, job_id)] == [ShardState.PENDING.value] * 2


def test_failed_shard_fails_the_job_naming_the_shard(database_url: str) -> None:
    job_id = _sampling_job(database_url, [[1, 1], [1, 1]])
    with session_scope(database_url) as session:
        shards.claim_shard(session, job_id, 1, "w1", 60, 5)
        shards.fail_shard(session, job_id, 1, "checkpoint unreadable")
    with session_scope(database_url) as session:
        job = jobs.get_job(session, job_id)
        assert job.state == JobState.FAILED.value and job.error == "shard 1 failed: checkpoint unreadable"


def test_released_shard_can_be_claimed_again_by_another_worker(database_url: str) -> None:
    job_id = _sampling_job(database_url, [[1, 1]])
    with session_scope(database_url) as session:
        shards.claim_shard(session, job_id, 0, "w1", 60, 5)
        assert shards.release_shard(session, job_id, 0, "w1", "S3 unreachable")
        again = shards.claim_shard(session, job_id, 0, "w2", 60, 5)
        assert again is not None and again.attempts == 2
