"""Listing jobs: newest first, filters, and keyset cursors that visit every job exactly once."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest

from synthjobs.ledger import jobs
from synthjobs.ledger.db import session_scope
from synthjobs.ledger.tables import JobKind, JobState

BASE = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


def _create_jobs(url: str, kinds: list[JobKind], *, same_time: bool) -> list[str]:
    """Jobs created in order; with `same_time` every one has the same created_at."""
    ids = []
    with session_scope(url) as session:
        for i, kind in enumerate(kinds):
            job = jobs.create_job(session, kind, {"n": i})
            job.created_at = BASE if same_time else BASE + timedelta(seconds=i)
            ids.append(job.id)
    return ids


def _all_pages(url: str, limit: int, **filters: object) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        with session_scope(url) as session:  # a fresh session per page, as the API does
            page, cursor = jobs.list_jobs(session, limit=limit, cursor=cursor, **filters)  # type: ignore[arg-type]
            pages.append([job.id for job in page])
        if cursor is None:
            return pages


def test_list_jobs_returns_newest_first(database_url: str) -> None:
    ids = _create_jobs(database_url, [JobKind.TRAIN] * 4, same_time=False)
    with session_scope(database_url) as session:
        page, cursor = jobs.list_jobs(session)
    assert [job.id for job in page] == ids[::-1] and cursor is None


def test_list_jobs_on_an_empty_ledger_is_one_empty_page(database_url: str) -> None:
    assert _all_pages(database_url, limit=2) == [[]]


@pytest.mark.parametrize("same_time", [False, True], ids=["distinct-times", "identical-times"])
def test_cursor_pagination_visits_every_job_exactly_once(database_url: str, same_time: bool) -> None:
    ids = _create_jobs(database_url, [JobKind.TRAIN] * 5, same_time=same_time)
    pages = _all_pages(database_url, limit=2)
    assert [len(page) for page in pages] == [2, 2, 1]
    visited = [job_id for page in pages for job_id in page]
    assert sorted(visited) == sorted(ids) and len(set(visited)) == 5
    if not same_time:
        assert visited == ids[::-1]
    else:
        assert visited == sorted(ids, reverse=True)  # ties broken by id, descending


def test_exact_multiple_of_the_page_size_ends_without_an_empty_page(database_url: str) -> None:
    _create_jobs(database_url, [JobKind.TRAIN] * 4, same_time=False)
    assert [len(page) for page in _all_pages(database_url, limit=2)] == [2, 2]


def test_jobs_created_after_the_first_page_do_not_shift_later_pages(database_url: str) -> None:
    ids = _create_jobs(database_url, [JobKind.TRAIN] * 3, same_time=False)
    with session_scope(database_url) as session:
        first, cursor = jobs.list_jobs(session, limit=2)
    with session_scope(database_url) as session:
        jobs.create_job(session, JobKind.TRAIN, {})
    with session_scope(database_url) as session:
        rest, end = jobs.list_jobs(session, limit=2, cursor=cursor)
    assert [job.id for job in first + list(rest)] == ids[::-1] and end is None


def test_list_jobs_filters_by_state_and_kind(database_url: str) -> None:
    kinds = [JobKind.TRAIN, JobKind.SAMPLE, JobKind.TRAIN, JobKind.SAMPLE, JobKind.TRAIN]
    ids = _create_jobs(database_url, kinds, same_time=False)
    with session_scope(database_url) as session:
        assert jobs.claim_job(session, ids[0], "w", 60) and jobs.claim_job(session, ids[1], "w", 60)
        jobs.finish_job(session, ids[1], JobState.SUCCEEDED)

    def listed(**filters: object) -> list[str]:
        with session_scope(database_url) as session:
            return [job.id for job in jobs.list_jobs(session, **filters)[0]]  # type: ignore[arg-type]

    assert listed(kind=JobKind.TRAIN) == [ids[4], ids[2], ids[0]]
    assert listed(kind=JobKind.SAMPLE) == [ids[3], ids[1]]
    assert listed(state=JobState.QUEUED) == [ids[4], ids[3], ids[2]]
    assert listed(state=JobState.RUNNING) == [ids[0]]
    assert listed(state=JobState.QUEUED, kind=JobKind.SAMPLE) == [ids[3]]
    assert listed(state=JobState.FAILED) == []
    assert _all_pages(database_url, limit=1, state=JobState.QUEUED) == [[ids[4]], [ids[3]], [ids[2]]]


def test_cursor_round_trips_through_encode_and_decode(database_url: str) -> None:
    (job_id,) = _create_jobs(database_url, [JobKind.TRAIN], same_time=True)
    with session_scope(database_url) as session:
        cursor = jobs.encode_cursor(jobs.get_job(session, job_id))
    assert "=" not in cursor and "/" not in cursor and "+" not in cursor
    assert jobs.decode_cursor(cursor) == (BASE, job_id)


def test_malformed_cursor_raises_value_error(database_url: str) -> None:
    malformed = [
        "!!!",
        "a",
        "bm90LWEtY3Vyc29y",  # "not-a-cursor": no separator
        base64.urlsafe_b64encode(b"yesterday|abc").decode(),
        base64.urlsafe_b64encode(b"\xff\xfe|abc").decode(),
    ]
    for cursor in malformed:
        with session_scope(database_url) as session, pytest.raises(ValueError, match="malformed cursor"):
            jobs.list_jobs(session, cursor=cursor)


def test_cursor_with_a_naive_timestamp_raises_value_error(database_url: str) -> None:
    cursor = base64.urlsafe_b64encode(b"2024-05-01T12:00:00|abc").decode()
    with session_scope(database_url) as session, pytest.raises(ValueError):
        jobs.list_jobs(session, cursor=cursor)
