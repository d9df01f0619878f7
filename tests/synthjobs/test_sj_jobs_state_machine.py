"""The job state machine on SQLite and PostgreSQL: guarded transitions, claims, progress."""

from __future__ import annotations

import itertools
import threading
from datetime import timedelta
from typing import Any

import pytest

from synthjobs.errors import InvalidTransition, JobNotFound
from synthjobs.ledger import jobs
from synthjobs.ledger.db import session_scope
from synthjobs.ledger.tables import Job, JobKind, JobState, utcnow

ALLOWED = {
    (JobState.QUEUED, JobState.RUNNING),
    (JobState.QUEUED, JobState.CANCELLED),
    (JobState.QUEUED, JobState.FAILED),
    (JobState.RUNNING, JobState.SUCCEEDED),
    (JobState.RUNNING, JobState.FAILED),
    (JobState.RUNNING, JobState.CANCELLED),
    (JobState.RUNNING, JobState.QUEUED),  # only when the worker's lease expired: run again, resuming
}
COLUMNS = [column.key for column in Job.__table__.columns]


def _new_job(url: str, kind: JobKind = JobKind.TRAIN) -> str:
    with session_scope(url) as session:
        return jobs.create_job(session, kind, {"config": {"epochs": 2}}).id


def _job_in(url: str, state: JobState) -> str:
    """A job driven through the state machine to `state`."""
    job_id = _new_job(url)
    with session_scope(url) as session:
        if state is JobState.QUEUED:
            return job_id
        if state in (JobState.RUNNING, JobState.SUCCEEDED):
            assert jobs.claim_job(session, job_id, "w1", 60)
        if state is not JobState.RUNNING:
            jobs.finish_job(session, job_id, state)
    return job_id


def _row(url: str, job_id: str) -> dict[str, Any]:
    with session_scope(url) as session:
        job = jobs.get_job(session, job_id)
        return {column: getattr(job, column) for column in COLUMNS}


def _event_kinds(url: str, job_id: str) -> list[str]:
    with session_scope(url) as session:
        return [event.kind for event in jobs.list_events(session, job_id)]


@pytest.mark.parametrize(("current", "target"), list(itertools.product(JobState, JobState)))
def test_check_transition_allows_exactly_the_state_machine_edges(current: JobState, target: JobState) -> None:
    if (current, target) in ALLOWED:
        jobs.check_transition(current, target)
    else:
        with pytest.raises(InvalidTransition, match=f"{current.value} job cannot become {target.value}"):
            jobs.check_transition(current, target)


def test_nothing_leaves_a_terminal_state() -> None:
    assert all(not jobs.TRANSITIONS[state] for state in jobs.TERMINAL_STATES)


def test_created_job_is_queued_with_a_submitted_event(database_url: str) -> None:
    job_id = _new_job(database_url, JobKind.SAMPLE)
    row = _row(database_url, job_id)
    assert row["state"] == "QUEUED" and row["kind"] == "sample" and row["phase"] == "queued"
    assert row["attempts"] == 0 and row["progress"] == 0.0 and row["worker"] is None
    assert row["params"] == {"config": {"epochs": 2}}
    assert row["created_at"].tzinfo is not None and row["started_at"] is None and row["finished_at"] is None
    assert _event_kinds(database_url, job_id) == ["submitted"]


def test_claim_moves_a_queued_job_to_running_and_counts_the_attempt(database_url: str) -> None:
    job_id = _new_job(database_url)
    before = utcnow()
    with session_scope(database_url) as session:
        assert jobs.claim_job(session, job_id, "worker-a", lease_seconds=120) is True
    row = _row(database_url, job_id)
    assert row["state"] == "RUNNING" and row["attempts"] == 1 and row["worker"] == "worker-a"
    assert row["phase"] == "starting" and row["started_at"] >= before - timedelta(seconds=1)
    assert row["lease_expires_at"] - row["started_at"] == timedelta(seconds=120)
    assert _event_kinds(database_url, job_id) == ["submitted", "claimed"]


def test_second_claim_of_a_job_does_nothing(database_url: str) -> None:
    job_id = _new_job(database_url)
    with session_scope(database_url) as session:
        assert jobs.claim_job(session, job_id, "worker-a", 60) is True
    claimed = _row(database_url, job_id)
    with session_scope(database_url) as session:
        assert jobs.claim_job(session, job_id, "worker-b", 60) is False
    assert _row(database_url, job_id) == claimed
    assert _event_kinds(database_url, job_id) == ["submitted", "claimed"]


def test_claim_of_a_finished_job_does_nothing(database_url: str) -> None:
    for state in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED):
        job_id = _job_in(database_url, state)
        before = _row(database_url, job_id)
        with session_scope(database_url) as session:
            assert jobs.claim_job(session, job_id, "worker-b", 60) is False
        assert _row(database_url, job_id) == before, state


def test_claim_of_a_running_job_with_a_live_lease_does_nothing(database_url: str) -> None:
    job_id = _job_in(database_url, JobState.RUNNING)
    with session_scope(database_url) as session:
        assert jobs.claim_job(session, job_id, "worker-b", 60) is False
    row = _row(database_url, job_id)
    assert row["worker"] == "w1" and row["attempts"] == 1


def _expire_lease(url: str, job_id: str) -> None:
    with session_scope(url) as session:
        jobs.get_job(session, job_id).lease_expires_at = utcnow() - timedelta(seconds=1)


def test_claim_of_a_running_job_whose_lease_expired_takes_it_over(database_url: str) -> None:
    job_id = _job_in(database_url, JobState.RUNNING)
    started = _row(database_url, job_id)["started_at"]
    _expire_lease(database_url, job_id)
    with session_scope(database_url) as session:
        assert jobs.claim_job(session, job_id, "worker-b", 60) is True
    row = _row(database_url, job_id)
    assert row["worker"] == "worker-b" and row["attempts"] == 2 and row["started_at"] == started
    assert _event_kinds(database_url, job_id) == ["submitted", "claimed", "claimed"]


def test_claim_past_max_attempts_fails_the_job_instead_of_running_it(database_url: str) -> None:
    job_id = _new_job(database_url)
    with session_scope(database_url) as session:
        assert jobs.claim_job(session, job_id, "w1", 60, max_attempts=2)
    _expire_lease(database_url, job_id)
    with session_scope(database_url) as session:
        assert jobs.claim_job(session, job_id, "w2", 60, max_attempts=2)
    _expire_lease(database_url, job_id)
    with session_scope(database_url) as session:
        assert jobs.claim_job(session, job_id, "w3", 60, max_attempts=2) is False
    row = _row(database_url, job_id)
    assert row["state"] == "FAILED" and row["attempts"] == 2 and "worker lost 2 times" in row["error"]
    assert _event_kinds(database_url, job_id)[-1] == "failed"


def test_finish_by_a_worker_that_lost_the_job_is_refused(database_url: str) -> None:
    job_id = _job_in(database_url, JobState.RUNNING)
    _expire_lease(database_url, job_id)
    with session_scope(database_url) as session:
        assert jobs.claim_job(session, job_id, "worker-b", 60)
    with pytest.raises(InvalidTransition), session_scope(database_url) as session:
        jobs.finish_job(session, job_id, JobState.SUCCEEDED, worker="w1")
    with session_scope(database_url) as session:
        jobs.finish_job(session, job_id, JobState.SUCCEEDED, worker="worker-b")
    assert _row(database_url, job_id)["state"] == "SUCCEEDED"


def test_claim_of_an_unknown_job_returns_false(database_url: str) -> None:
    with session_scope(database_url) as session:
        assert jobs.claim_job(session, "00000000-0000-4000-8000-000000000000", "w", 60) is False


def test_succeeded_job_records_result_and_full_progress(database_url: str) -> None:
    job_id = _job_in(database_url, JobState.RUNNING)
    with session_scope(database_url) as session:
        jobs.finish_job(session, job_id, JobState.SUCCEEDED, result={"model_id": "m"})
    row = _row(database_url, job_id)
    assert row["state"] == "SUCCEEDED" and row["progress"] == 1.0 and row["phase"] == "succeeded"
    assert row["result"] == {"model_id": "m"} and row["finished_at"] is not None
    assert row["lease_expires_at"] is None
    assert _event_kinds(database_url, job_id) == ["submitted", "claimed", "succeeded"]


@pytest.mark.parametrize("start", [JobState.QUEUED, JobState.RUNNING])
def test_failed_job_keeps_its_error_as_the_event_message(database_url: str, start: JobState) -> None:
    job_id = _job_in(database_url, start)
    with session_scope(database_url) as session:
        jobs.finish_job(session, job_id, JobState.FAILED, error="loss is NaN")
        events = jobs.list_events(session, job_id)
        assert (events[-1].kind, events[-1].message) == ("failed", "loss is NaN")
    row = _row(database_url, job_id)
    assert row["state"] == "FAILED" and row["error"] == "loss is NaN"


ILLEGAL = [
    (JobState.SUCCEEDED, JobState.RUNNING),
    (JobState.FAILED, JobState.SUCCEEDED),
    (JobState.QUEUED, JobState.SUCCEEDED),
    (JobState.CANCELLED, JobState.FAILED),
    (JobState.SUCCEEDED, JobState.CANCELLED),
]


def test_finish_job_refuses_an_illegal_transition_and_leaves_the_row_unchanged(database_url: str) -> None:
    for start, target in ILLEGAL:
        job_id = _job_in(database_url, start)
        before, events = _row(database_url, job_id), _event_kinds(database_url, job_id)
        with pytest.raises(InvalidTransition), session_scope(database_url) as session:
            jobs.finish_job(session, job_id, target, error="late", result={"x": 1})
        assert _row(database_url, job_id) == before, (start, target)
        assert _event_kinds(database_url, job_id) == events, (start, target)


def test_finish_job_refuses_a_non_terminal_target(database_url: str) -> None:
    job_id = _new_job(database_url)
    with pytest.raises((InvalidTransition, ValueError)), session_scope(database_url) as session:
        jobs.finish_job(session, job_id, JobState.RUNNING)


def test_finish_job_on_an_unknown_job_raises_job_not_found(database_url: str) -> None:
    with pytest.raises(JobNotFound), session_scope(database_url) as session:
        jobs.finish_job(session, "00000000-0000-4000-8000-000000000000", JobState.FAILED)


def test_set_progress_clamps_to_the_unit_interval(database_url: str) -> None:
    job_id = _job_in(database_url, JobState.RUNNING)
    for given, stored in [(-0.5, 0.0), (0.25, 0.25), (1.7, 1.0), (1.0, 1.0), (0.0, 0.0)]:
        with session_scope(database_url) as session:
            assert jobs.set_progress(session, job_id, given, f"at {given}") is True
        row = _row(database_url, job_id)
        assert (row["progress"], row["phase"]) == (stored, f"at {given}")


def test_set_progress_keeps_nan_out_of_the_ledger(database_url: str) -> None:
    job_id = _job_in(database_url, JobState.RUNNING)
    with session_scope(database_url) as session:
        jobs.set_progress(session, job_id, float("nan"), "epoch ?")
    assert 0.0 <= _row(database_url, job_id)["progress"] <= 1.0


def test_set_progress_on_a_job_that_is_not_running_returns_false(database_url: str) -> None:
    for state in (JobState.QUEUED, JobState.SUCCEEDED, JobState.CANCELLED):
        job_id = _job_in(database_url, state)
        before = _row(database_url, job_id)
        with session_scope(database_url) as session:
            assert jobs.set_progress(session, job_id, 0.5, "epoch 5/10") is False
        assert _row(database_url, job_id) == before, state


def test_get_job_of_an_unknown_id_raises_job_not_found(database_url: str) -> None:
    with session_scope(database_url) as session:
        with pytest.raises(JobNotFound):
            jobs.get_job(session, "00000000-0000-4000-8000-000000000000")
        with pytest.raises(JobNotFound):
            jobs.get_job(session, "not-a-uuid")
        with pytest.raises(JobNotFound):
            jobs.list_events(session, "not-a-uuid")


def test_only_one_of_two_racing_claims_wins_on_postgres(postgres_url: str) -> None:
    for _ in range(5):
        job_id = _new_job(postgres_url)
        barrier = threading.Barrier(2)
        results: dict[str, bool] = {}

        def claim(
            worker: str, job_id: str = job_id, barrier: threading.Barrier = barrier, results: dict = results
        ) -> None:
            with session_scope(postgres_url) as session:
                barrier.wait(timeout=10)
                results[worker] = jobs.claim_job(session, job_id, worker, 60)

        threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert sorted(results.values()) == [False, True]
        row = _row(postgres_url, job_id)
        winner = next(worker for worker, won in results.items() if won)
        assert row["attempts"] == 1 and row["worker"] == winner
        assert _event_kinds(postgres_url, job_id) == ["submitted", "claimed"]


def test_a_claim_waits_for_an_uncommitted_rival_and_then_loses_on_postgres(postgres_url: str) -> None:
    job_id = _new_job(postgres_url)
    second: list[bool] = []
    with session_scope(postgres_url) as first:
        assert jobs.claim_job(first, job_id, "w1", 60)
        rival = threading.Thread(
            target=lambda: second.append(_claim_in_new_session(postgres_url, job_id, "w2"))
        )
        rival.start()
        rival.join(timeout=0.5)
        assert rival.is_alive(), "the rival's UPDATE must block on the uncommitted claim's row lock"
    rival.join(timeout=30)
    assert second == [False]
    assert _row(postgres_url, job_id)["worker"] == "w1"


def _claim_in_new_session(url: str, job_id: str, worker: str) -> bool:
    with session_scope(url) as session:
        return jobs.claim_job(session, job_id, worker, 60)


def test_record_progress_writes_progress_and_events_in_one_transaction(database_url: str) -> None:
    job_id = _job_in(database_url, JobState.RUNNING)
    events = [("epoch", "epoch 1/2", {"epoch": 1}), ("privacy", "epsilon 0.5", None)]
    with session_scope(database_url) as session:
        assert jobs.record_progress(session, job_id, 0.45, "epoch 1/2", events) is True
    row = _row(database_url, job_id)
    assert (row["progress"], row["phase"]) == (0.45, "epoch 1/2")
    with session_scope(database_url) as session:
        recorded = [(e.kind, e.message, e.data) for e in jobs.list_events(session, job_id)][-2:]
    assert recorded == events


def test_record_progress_rolls_back_both_together(database_url: str) -> None:
    job_id = _job_in(database_url, JobState.RUNNING)
    before, kinds = _row(database_url, job_id), _event_kinds(database_url, job_id)
    with pytest.raises(RuntimeError), session_scope(database_url) as session:
        jobs.record_progress(session, job_id, 0.9, "epoch 9/10", [("epoch", "epoch 9/10", {"epoch": 9})])
        raise RuntimeError("the commit never happens")
    assert _row(database_url, job_id) == before and _event_kinds(database_url, job_id) == kinds
