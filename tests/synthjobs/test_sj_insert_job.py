"""`jobs.insert_job` (the submit path's job + "submitted" event at once) writes what `create_job` does."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, text

from synthjobs.ledger import jobs
from synthjobs.ledger.db import get_engine, session_scope
from synthjobs.ledger.shards import create_sampling_job
from synthjobs.ledger.tables import Job

VOLATILE = {"id", "created_at", "updated_at"}
PARAMS = {"config": {"epochs": 2}, "priority": "high"}


def _raw_rows(url: str, job_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The job's row and its events' rows as SQL holds them (JSON as text: null is not SQL NULL)."""
    as_text = "::text" if url.startswith("postgresql") else ""
    with session_scope(url) as session:
        job = session.execute(
            text(
                f"SELECT *, params{as_text} AS params_text, result{as_text} AS result_text "
                "FROM jobs WHERE id = :i"
            ),
            {"i": job_id},
        ).one()
        events = session.execute(
            text(
                f"SELECT job_id, at, kind, message, data{as_text} AS data_text, data IS NULL AS data_null "
                "FROM job_events WHERE job_id = :i ORDER BY id"
            ),
            {"i": job_id},
        ).all()
    row = {k: v for k, v in job._mapping.items() if k not in VOLATILE}
    return row, [{k: v for k, v in e._mapping.items() if k not in {"job_id", "at"}} for e in events]


def test_insert_job_writes_the_rows_create_job_writes(database_url: str) -> None:
    with session_scope(database_url) as session:
        created = jobs.create_job(session, "train", PARAMS, tenant="acme").id
    with session_scope(database_url) as session:
        inserted = jobs.insert_job(session, "train", PARAMS, tenant="acme")
    assert _raw_rows(database_url, inserted.id) == _raw_rows(database_url, created)
    with session_scope(database_url) as session:
        stored = jobs.get_job(session, inserted.id)
        columns = [c.key for c in Job.__table__.columns]
        assert {c: getattr(inserted, c) for c in columns} == {c: getattr(stored, c) for c in columns}
        (submitted,) = jobs.list_events(session, inserted.id)
        assert submitted.at == stored.created_at and submitted.data is None


def test_insert_job_is_one_statement_on_postgresql(postgres_url: str) -> None:
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(args[2])

    engine = get_engine(postgres_url)
    event.listen(engine, "before_cursor_execute", record)
    try:
        with session_scope(postgres_url) as session:
            job = jobs.insert_job(session, "train", {}, tenant="acme")
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert len(statements) == 1 and statements[0].lstrip().upper().startswith("WITH")
    with session_scope(postgres_url) as session:
        assert [e.kind for e in jobs.list_events(session, job.id)] == ["submitted"]


def test_a_sampling_job_reserves_its_planned_bytes_with_its_shards(database_url: str) -> None:
    params = {"counts": [5, 5], "shard_size": 4, "planned_bytes": 1234}
    with session_scope(database_url) as session:
        job, shards = create_sampling_job(session, params, tenant="acme")
    assert shards == 3 and job.reserved_bytes == 1234
    with session_scope(database_url) as session:
        assert jobs.get_job(session, job.id).reserved_bytes == 1234
        assert [e.kind for e in jobs.list_events(session, job.id)] == ["submitted"]
