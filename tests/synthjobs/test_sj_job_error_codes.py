"""Every FAILED job carries a machine-readable error code, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect

from synthjobs.ledger import jobs
from synthjobs.ledger.db import get_engine, session_scope
from synthjobs.ledger.migrate import alembic_config, upgrade_database
from synthjobs.ledger.tables import JobKind, JobState


def test_a_failed_job_gets_job_failed_unless_a_code_is_named(database_url: str) -> None:
    with session_scope(database_url) as session:
        plain = jobs.create_job(session, JobKind.TRAIN, {}).id
        named = jobs.create_job(session, JobKind.TRAIN, {}).id
        done = jobs.create_job(session, JobKind.TRAIN, {}).id
    with session_scope(database_url) as session:
        jobs.finish_job(session, plain, JobState.FAILED, error="bad data")
        jobs.finish_job(session, named, JobState.FAILED, error="loss is NaN", error_code="training_diverged")
        jobs.finish_job(session, done, JobState.CANCELLED)
    with session_scope(database_url) as session:
        codes = [jobs.get_job(session, job_id).error_code for job_id in (plain, named, done)]
    assert codes == ["job_failed", "training_diverged", None]


def test_exhausted_attempts_fail_a_job_as_worker_lost(database_url: str) -> None:
    with session_scope(database_url) as session:
        job_id = jobs.create_job(session, JobKind.TRAIN, {}).id
    with session_scope(database_url) as session:
        assert jobs.claim_job(session, job_id, "w1", 60, max_attempts=1)
        assert jobs.release_job(session, job_id, "w1", "test")
    with session_scope(database_url) as session:
        assert not jobs.claim_job(session, job_id, "w2", 60, max_attempts=1)
    with session_scope(database_url) as session:
        job = jobs.get_job(session, job_id)
        assert (job.state, job.error_code) == ("FAILED", "worker_lost")


def test_the_error_code_migration_goes_down_and_up_again(database_url: str) -> None:
    def columns() -> set[str]:
        engine = get_engine(database_url)
        engine.dispose()
        return {c["name"] for c in inspect(engine).get_columns("jobs")}

    assert "error_code" in columns()
    command.downgrade(alembic_config(database_url), "0008-1")  # the revision before this one
    assert "error_code" not in columns()
    upgrade_database(database_url)
    assert "error_code" in columns()
