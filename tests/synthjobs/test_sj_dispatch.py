"""Releasing sampling shards from SQL: a window over all live jobs, filled fairly, each shard once."""

from __future__ import annotations

import threading

from synthjobs.ledger import dispatch, jobs, shards
from synthjobs.ledger.db import session_scope
from synthjobs.ledger.tables import JobKind, JobState


def _sampling_job(url: str, tenant: str, n: int, priority: str = "normal") -> str:
    with session_scope(url) as session:
        job = jobs.create_job(session, JobKind.SAMPLE, {"counts": [n], "priority": priority}, tenant=tenant)
        shards.create_shards(session, job.id, [[1]] * n)
        return job.id


def _release(url: str, window: int) -> dict[str, list[int]]:
    with session_scope(url) as session:
        return dispatch.release_next(session, window)


def _finish(url: str, job_id: str, index: int) -> None:
    with session_scope(url) as session:
        assert shards.claim_shard(session, job_id, index, "w", 60, 5) is not None
        assert shards.complete_shard(
            session, job_id, index, "w", key="k", sha256="0" * 64, size=1, seconds=0.1, quality={}
        )


def test_new_shards_wait_unreleased_and_the_reconciler_does_not_see_them(database_url: str) -> None:
    job_id = _sampling_job(database_url, "A", 10)
    with session_scope(database_url) as session:
        assert shards.pending_shards_of_live_jobs(session) == []
    assert _release(database_url, 4) == {job_id: [0, 1, 2, 3]}
    assert _release(database_url, 4) == {}  # the window is full
    with session_scope(database_url) as session:
        assert dispatch.in_flight(session) == 4
        assert sorted(r[1] for r in shards.pending_shards_of_live_jobs(session)) == [0, 1, 2, 3]


def test_a_finished_shard_frees_one_slot_and_the_other_tenant_gets_it(database_url: str) -> None:
    a = _sampling_job(database_url, "A", 300)
    assert _release(database_url, 2) == {a: [0, 1]}
    b = _sampling_job(database_url, "B", 100)
    assert _release(database_url, 2) == {}
    _finish(database_url, a, 0)
    assert _release(database_url, 2) == {b: [0]}
    _finish(database_url, a, 1)
    assert _release(database_url, 2) == {a: [2]}  # now A is the one below its share


def test_a_high_priority_job_of_the_same_tenant_goes_before_the_rest_of_a_normal_one(
    database_url: str,
) -> None:
    normal = _sampling_job(database_url, "A", 5)
    assert _release(database_url, 1) == {normal: [0]}
    high = _sampling_job(database_url, "A", 2, priority="high")
    _finish(database_url, normal, 0)
    assert _release(database_url, 1) == {high: [0]}
    with session_scope(database_url) as session:
        assert jobs.get_job(session, high).priority == "high"


def test_a_cancelled_job_leaves_the_window(database_url: str) -> None:
    a = _sampling_job(database_url, "A", 5)
    b = _sampling_job(database_url, "B", 5)
    assert _release(database_url, 2) == {a: [0], b: [0]}
    with session_scope(database_url) as session:
        jobs.finish_job(session, a, JobState.CANCELLED)
    assert _release(database_url, 2) == {b: [1]}


def test_concurrent_dispatchers_never_overfill_nor_release_a_shard_twice(database_url: str) -> None:
    _sampling_job(database_url, "A", 50)
    _sampling_job(database_url, "B", 50)
    results: list[dict[str, list[int]]] = []

    def race() -> None:
        results.append(_release(database_url, 6))

    threads = [threading.Thread(target=race) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    released = [(job, i) for result in results for job, indexes in result.items() for i in indexes]
    assert len(released) == len(set(released)) == 6


def test_backlogs_count_waiting_shards_only_up_to_the_cap_and_per_job(database_url: str) -> None:
    big, small = _sampling_job(database_url, "A", 50), _sampling_job(database_url, "B", 3)
    assert _release(database_url, 2) == {big: [0], small: [0]}
    with session_scope(database_url) as session:
        seen = {b.job_id: (b.waiting, b.in_flight) for b in dispatch.backlogs(session, cap=4)}
        uncapped = {b.job_id: b.waiting for b in dispatch.backlogs(session)}
    assert seen == {big: (4, 1), small: (2, 1)}  # each job its own counts, the big one capped
    assert uncapped == {big: 49, small: 2}


def test_a_job_done_and_its_shards_leave_the_backlog(database_url: str) -> None:
    job_id = _sampling_job(database_url, "A", 1)
    assert _release(database_url, 4) == {job_id: [0]}
    _finish(database_url, job_id, 0)
    with session_scope(database_url) as session:
        assert dispatch.backlogs(session, cap=4) == []


def test_a_big_job_writes_its_progress_row_at_each_percent_not_each_shard(database_url: str) -> None:
    job_id = _sampling_job(database_url, "A", 200)
    _release(database_url, 200)
    progress = []
    for index in range(4):
        _finish(database_url, job_id, index)
        with session_scope(database_url) as session:
            progress.append(jobs.get_job(session, job_id).progress)
    assert progress == [0.0, 0.01, 0.01, 0.02]  # every 2 shards of 200
