"""`notify` in the ledger: migration 0014 goes down and up, and the outbox signs a job's own destination."""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect

from synthjobs.ledger import jobs, webhooks
from synthjobs.ledger.db import get_engine, session_scope
from synthjobs.ledger.migrate import alembic_config, upgrade_database
from synthjobs.ledger.tables import JobState, WebhookDelivery, utcnow


def test_the_notify_migration_goes_down_and_up_again(database_url: str) -> None:
    def columns(table: str) -> set[str]:
        engine = get_engine(database_url)
        engine.dispose()
        return {c["name"] for c in inspect(engine).get_columns(table)}

    assert {"notify", "notify_secret"} <= columns("jobs") & columns("schedules")
    command.downgrade(alembic_config(database_url), "0013")
    assert "notify" not in columns("jobs") and "notify_secret" not in columns("schedules")
    upgrade_database(database_url)
    assert {"notify", "notify_secret"} <= columns("jobs") & columns("schedules")


def test_a_finished_job_with_notify_gets_an_outbox_row_signed_with_its_own_secret(database_url: str) -> None:
    with session_scope(database_url) as session:
        job = jobs.create_job(session, "train", {"epochs": 1}, tenant="acme")
        secret = webhooks.attach_notify(job, "https://hooks.example.com/h", None)
        job_id = job.id
    with session_scope(database_url) as session:
        assert jobs.claim_job(session, job_id, "w1", 60)
        jobs.finish_job(session, job_id, JobState.SUCCEEDED)
    with session_scope(database_url) as session:
        [row] = session.query(WebhookDelivery).all()
        assert (row.webhook_id, row.job_id, row.url) == (None, job_id, "https://hooks.example.com/h")
        [due] = webhooks.claim_due(session, utcnow(), utcnow())
        assert due.secret == secret
