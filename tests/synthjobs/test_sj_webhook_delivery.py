"""Webhook delivery from the SQL outbox to a real receiver on 127.0.0.1, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from synthjobs.ledger import jobs, webhooks
from synthjobs.ledger.db import session_scope
from synthjobs.ledger.tables import JobState, WebhookDelivery, utcnow
from synthjobs.maintenance.webhooks import deliver_due
from synthjobs.rules.webhooks import SIGNATURE_HEADER, verify_signature
from synthjobs.settings import Settings
from tests.support.webhook_receiver import Receiver, free_port

EVENTS = ["job.succeeded", "job.failed", "job.cancelled", "model.promoted"]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver(free_port())
    yield made
    made.stop()


def _settings(database_url: str, tmp_path: Path, **overrides: object) -> Settings:
    return Settings(home=tmp_path, database_url=database_url, webhook_allow_hosts="127.0.0.1", **overrides)


def _hook(url: str, target: str, tenant: str = "acme") -> tuple[str, str]:
    with session_scope(url) as session:
        row = webhooks.create_webhook(session, tenant, target, EVENTS)
        return row.id, row.secret


def _finished_job(url: str, tenant: str = "acme", state: JobState = JobState.SUCCEEDED) -> str:
    with session_scope(url) as session:
        job = jobs.create_job(session, "train", {"epochs": 1}, tenant=tenant)
        job_id = job.id
    with session_scope(url) as session:
        assert jobs.claim_job(session, job_id, "w1", 60)
        jobs.finish_job(session, job_id, state, error="boom" if state is JobState.FAILED else None)
    return job_id


def _deliveries(url: str) -> list[WebhookDelivery]:
    with session_scope(url) as session:
        rows = session.query(WebhookDelivery).all()
        session.expunge_all()
        return rows


def test_a_finished_job_is_posted_once_signed_with_the_endpoints_secret(
    database_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    settings = _settings(database_url, tmp_path)
    receiver.start()
    hook_id, secret = _hook(database_url, receiver.url)
    job_id = _finished_job(database_url)
    _hook(database_url, receiver.url, tenant="globex")  # another tenant's endpoint hears nothing of acme's
    assert len(deliver_due(settings)) == 1
    assert deliver_due(settings) == []  # delivered rows are not sent again
    [request] = receiver.requests
    assert request.headers["Content-Type"] == "application/json"
    assert verify_signature(secret, request.body, request.headers[SIGNATURE_HEADER], now=int(time.time()))
    event = json.loads(request.body)
    assert event["type"] == "job.succeeded" and event["data"]["id"] == job_id
    assert event["data"]["state"] == "SUCCEEDED" and "params" not in event["data"]
    with session_scope(database_url) as session:
        [delivery] = webhooks.list_deliveries(session, hook_id, tenant="acme")
        assert (delivery.state, delivery.attempts, delivery.last_status) == ("delivered", 1, 200)
        assert delivery.event_id == event["id"]
        kinds = [e.kind for e in jobs.list_events(session, job_id)]
        assert kinds[-1] == "webhook"


def test_the_outbox_row_rolls_back_with_the_state_change(database_url: str, tmp_path: Path) -> None:
    _hook(database_url, "http://127.0.0.1:9/hook")
    with session_scope(database_url) as session:
        job_id = jobs.create_job(session, "train", {}, tenant="acme").id
    with pytest.raises(RuntimeError), session_scope(database_url) as session:
        assert jobs.claim_job(session, job_id, "w1", 60)
        jobs.finish_job(session, job_id, JobState.FAILED, error="boom")
        raise RuntimeError("crash before the commit")
    assert _deliveries(database_url) == []
    with session_scope(database_url) as session:
        assert jobs.get_job(session, job_id).state == JobState.QUEUED.value


def test_a_receiver_that_is_down_gets_the_event_once_it_is_back(
    database_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    settings = _settings(database_url, tmp_path, webhook_timeout=1.0)
    _hook(database_url, receiver.url)
    job_id = _finished_job(database_url, state=JobState.FAILED)
    assert deliver_due(settings) == []  # nothing listens yet
    receiver.start()
    receiver.status = 503
    later = utcnow() + timedelta(hours=1)
    assert deliver_due(settings, now=later) == []  # up but failing
    [pending] = _deliveries(database_url)
    assert (pending.state, pending.attempts, pending.last_status) == ("pending", 2, 503)
    assert pending.next_attempt_at > later  # backed off
    assert deliver_due(settings) == []  # not due yet
    receiver.status = 200
    assert len(deliver_due(settings, now=later + timedelta(hours=2))) == 1
    ids = {json.loads(r.body)["id"] for r in receiver.requests}
    assert len(receiver.requests) == 2 and len(ids) == 1  # a retry carries the same event id
    with session_scope(database_url) as session:
        tries = [e for e in jobs.list_events(session, job_id) if e.kind == "webhook"]
        assert [e.data["state"] for e in tries if e.data] == ["pending", "pending", "delivered"]


def test_a_delivery_that_keeps_failing_is_given_up_after_the_retry_window(
    database_url: str, tmp_path: Path
) -> None:
    settings = _settings(database_url, tmp_path, webhook_retry_hours=1, webhook_timeout=1.0)
    _hook(database_url, f"http://127.0.0.1:{free_port()}/hook")
    _finished_job(database_url, state=JobState.CANCELLED)
    deliver_due(settings, now=utcnow() + timedelta(hours=2))
    [row] = _deliveries(database_url)
    assert row.state == "failed" and row.attempts == 1 and row.last_error


def test_an_internal_destination_is_refused_at_delivery_when_not_allow_listed(
    database_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    settings = Settings(home=tmp_path, database_url=database_url)  # no allow list
    receiver.start()
    _hook(database_url, receiver.url)
    _finished_job(database_url)
    assert deliver_due(settings) == []
    assert receiver.requests == []
    [row] = _deliveries(database_url)
    assert row.last_error is not None and "loopback" in row.last_error
