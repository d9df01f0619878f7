"""`notify` on a job and on a schedule: checked like an endpoint, signed with a secret shown once, delivered
from the same SQL outbox to a real receiver on 127.0.0.1 (allow-listed), and never another tenant's."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from synthjobs.ledger import jobs, schedules
from synthjobs.ledger.db import session_scope
from synthjobs.ledger.tables import JobState, WebhookDelivery, utcnow
from synthjobs.ledger.tokens import create_token
from synthjobs.ledger.webhooks import delivery_secret
from synthjobs.maintenance.webhooks import deliver_due
from synthjobs.rules.webhooks import SIGNATURE_HEADER, verify_signature
from synthjobs.settings import Settings
from tests.support.webhook_receiver import Receiver, free_port

TRAIN = {"dataset": "digits", "hyperparameters": {"epochs": 1}}
LedgerUrl = Callable[[TestClient], str]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver(free_port()).start()
    yield made
    made.stop()


@pytest.fixture
def notify_api(make_api: Callable[..., TestClient]) -> TestClient:
    return make_api(webhook_allow_hosts="127.0.0.1", token_cache_seconds=0)


def _settings(client: TestClient) -> Settings:
    return client.app.state.settings  # type: ignore[attr-defined,no-any-return]


def _finish(url: str, job_id: str, state: JobState = JobState.SUCCEEDED) -> None:
    with session_scope(url) as session:
        assert jobs.claim_job(session, job_id, "w", 60)
        jobs.finish_job(session, job_id, state, error="boom" if state is JobState.FAILED else None)


def _tenants(client: TestClient, url: str) -> dict[str, dict[str, str]]:
    with session_scope(url) as session:
        return {
            tenant: {"Authorization": f"Bearer {create_token(session, tenant)}"}
            for tenant in ("acme", "globex")
        }


def test_a_job_with_notify_posts_its_signed_event_and_its_get_never_shows_the_secret(
    notify_api: TestClient, ledger_url: LedgerUrl, receiver: Receiver
) -> None:
    answer = notify_api.post("/v1/jobs/train", json={**TRAIN, "notify": {"url": receiver.url}})
    assert answer.status_code == 202, answer.text
    job = answer.json()
    secret = job["notify"]["secret"]
    assert secret.startswith("whsec_")
    assert job["notify"]["events"] == ["job.cancelled", "job.failed", "job.succeeded"]
    shown = notify_api.get(f"/v1/jobs/{job['id']}").json()["notify"]
    assert shown == {"url": receiver.url, "events": job["notify"]["events"], "secret": None}
    assert secret not in notify_api.get("/v1/jobs").text
    assert "notify" not in job["params"]
    _finish(ledger_url(notify_api), job["id"])
    assert len(deliver_due(_settings(notify_api))) == 1
    [request] = receiver.requests
    assert verify_signature(secret, request.body, request.headers[SIGNATURE_HEADER], now=int(time.time()))
    event = json.loads(request.body)
    assert (event["type"], event["data"]["id"]) == ("job.succeeded", job["id"])
    events = notify_api.get(f"/v1/jobs/{job['id']}/events").json()
    [attempt] = [e for e in events if e["kind"] == "webhook"]
    assert attempt["data"]["notify"] is True and attempt["data"]["status"] == 200


def test_notify_sends_only_the_events_it_names(
    notify_api: TestClient, ledger_url: LedgerUrl, receiver: Receiver
) -> None:
    notify = {"url": receiver.url, "events": ["job.failed"]}
    quiet = notify_api.post("/v1/jobs/train", json={**TRAIN, "notify": notify}).json()
    loud = notify_api.post("/v1/jobs/train", json={**TRAIN, "notify": notify}).json()
    _finish(ledger_url(notify_api), quiet["id"])
    _finish(ledger_url(notify_api), loud["id"], JobState.FAILED)
    assert len(deliver_due(_settings(notify_api))) == 1
    [request] = receiver.requests
    assert json.loads(request.body)["data"]["id"] == loud["id"]
    # each job signs with its own secret
    header = request.headers[SIGNATURE_HEADER]
    assert verify_signature(loud["notify"]["secret"], request.body, header, now=int(time.time()))
    assert not verify_signature(quiet["notify"]["secret"], request.body, header, now=int(time.time()))


def test_a_sampling_job_takes_notify_too(
    notify_api: TestClient, add_model: Callable[..., str], receiver: Receiver
) -> None:
    add_model(notify_api)
    body = {"model": "digits-cvae:1", "per_class": 1, "notify": {"url": receiver.url}}
    answer = notify_api.post("/v1/jobs/sample", json=body)
    assert answer.status_code == 202, answer.text
    assert answer.json()["notify"]["secret"].startswith("whsec_")
    assert "notify" not in answer.json()["params"]


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/x",
        "http://10.0.0.1/x",
        "http://169.254.169.254/latest/meta-data",
        "https://user:pw@example.com/x",
        "http://does-not-resolve.invalid/x",
        "http://[abc/x",
        "https://example.com/" + "x" * 2001,
    ],
)
def test_an_unusable_notify_url_is_a_422_naming_notify_url(notify_api: TestClient, url: str) -> None:
    answer = notify_api.post("/v1/jobs/train", json={**TRAIN, "notify": {"url": url}})
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0]["loc"][-2:] == ["notify", "url"]


@pytest.mark.parametrize("notify", [{"url": "http://127.0.0.1:9/h", "events": ["model.promoted"]}, {}])
def test_a_malformed_notify_is_a_422(notify_api: TestClient, notify: dict[str, Any]) -> None:
    answer = notify_api.post("/v1/jobs/train", json={**TRAIN, "notify": notify})
    assert answer.status_code == 422, answer.text
    assert "notify" in answer.json()["detail"][0]["loc"]


def test_loopback_notify_is_refused_unless_allow_listed(make_api: Callable[..., TestClient]) -> None:
    answer = make_api().post("/v1/jobs/train", json={**TRAIN, "notify": {"url": "http://127.0.0.1:9/h"}})
    assert answer.status_code == 422 and "loopback" in answer.text
    assert answer.json()["detail"][0]["loc"][-2:] == ["notify", "url"]


def test_the_destination_is_checked_again_at_delivery(
    notify_api: TestClient, ledger_url: LedgerUrl, receiver: Receiver
) -> None:
    job = notify_api.post("/v1/jobs/train", json={**TRAIN, "notify": {"url": receiver.url}}).json()
    _finish(ledger_url(notify_api), job["id"])
    strict = _settings(notify_api).model_copy(update={"webhook_allow_hosts": ""})
    assert deliver_due(strict) == []
    assert receiver.requests == []
    [attempt] = [e for e in notify_api.get(f"/v1/jobs/{job['id']}/events").json() if e["kind"] == "webhook"]
    assert "refused" in attempt["message"] and "loopback" in attempt["message"]


def test_a_schedules_runs_notify_signed_with_the_schedules_secret(
    notify_api: TestClient, ledger_url: LedgerUrl, receiver: Receiver
) -> None:
    body = {
        "name": "nightly",
        "cron": "0 3 * * *",
        "model_name": "digits-cvae",
        "train": TRAIN,
        "notify": {"url": receiver.url, "events": ["job.succeeded"]},
    }
    created = notify_api.post("/v1/schedules", json=body)
    assert created.status_code == 201, created.text
    secret = created.json()["notify"]["secret"]
    assert secret.startswith("whsec_")
    schedule_id = created.json()["id"]
    assert notify_api.get(f"/v1/schedules/{schedule_id}").json()["notify"]["secret"] is None
    assert secret not in notify_api.get("/v1/schedules").text
    job_id = schedules.fire_schedule(_settings(notify_api), schedule_id, utcnow() + timedelta(days=2), "t")
    assert job_id is not None
    assert notify_api.get(f"/v1/jobs/{job_id}").json()["notify"]["url"] == receiver.url
    _finish(ledger_url(notify_api), job_id)
    assert len(deliver_due(_settings(notify_api))) == 1
    [request] = receiver.requests
    assert verify_signature(secret, request.body, request.headers[SIGNATURE_HEADER], now=int(time.time()))
    assert json.loads(request.body)["data"]["id"] == job_id


def test_a_schedules_train_may_not_carry_its_own_notify(notify_api: TestClient) -> None:
    body = {
        "name": "nightly",
        "cron": "0 3 * * *",
        "model_name": "digits-cvae",
        "train": {**TRAIN, "notify": {"url": "http://127.0.0.1:9/h"}},
    }
    answer = notify_api.post("/v1/schedules", json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0]["loc"][-2:] == ["train", "notify"]


def test_another_tenant_can_neither_see_nor_reuse_a_notify(
    notify_api: TestClient, ledger_url: LedgerUrl, receiver: Receiver
) -> None:
    url = ledger_url(notify_api)
    acme, globex = _tenants(notify_api, url).values()
    job = notify_api.post("/v1/jobs/train", json={**TRAIN, "notify": {"url": receiver.url}}, headers=acme)
    job_id = job.json()["id"]
    assert notify_api.get(f"/v1/jobs/{job_id}", headers=globex).status_code == 404
    assert receiver.url not in notify_api.get("/v1/jobs", headers=globex).text
    theirs = notify_api.post("/v1/jobs/train", json=TRAIN, headers=globex).json()
    _finish(url, theirs["id"])  # globex's job says nothing to acme's notify
    with session_scope(url) as session:
        assert session.query(WebhookDelivery).count() == 0
        # an outbox row of globex naming acme's job is never signed with acme's secret
        forged = WebhookDelivery(
            event_id="e",
            tenant="globex",
            event_type="job.succeeded",
            job_id=job_id,
            url=receiver.url,
            body="{}",
        )
        session.add(forged)
        session.flush()
        assert delivery_secret(session, forged) is None
    assert deliver_due(_settings(notify_api)) == []
    assert receiver.requests == []
