"""`/v1/webhooks`: registration checks the URL, the secret is shown once, deliveries are listed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from synthjobs.ledger import jobs
from synthjobs.ledger.db import session_scope
from synthjobs.ledger.tables import JobState

HOOK = {"url": "http://127.0.0.1:9/hook", "event_types": ["job.succeeded", "job.failed"]}


@pytest.fixture
def hooks_api(make_api: Callable[..., TestClient]) -> TestClient:
    return make_api(webhook_allow_hosts="127.0.0.1")


def test_the_secret_is_shown_at_creation_and_never_again(hooks_api: TestClient) -> None:
    created = hooks_api.post("/v1/webhooks", json=HOOK)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["secret"].startswith("whsec_") and body["event_types"] == sorted(HOOK["event_types"])
    listed = hooks_api.get("/v1/webhooks").json()
    assert [h["id"] for h in listed] == [body["id"]] and "secret" not in listed[0]
    assert "secret" not in hooks_api.get(f"/v1/webhooks/{body['id']}").json()
    assert hooks_api.delete(f"/v1/webhooks/{body['id']}").status_code == 204
    assert hooks_api.get(f"/v1/webhooks/{body['id']}").status_code == 404


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"url": "ftp://example.com/x"}, "url"),
        ({"url": "http://10.0.0.1/x"}, "url"),
        ({"url": "http://169.254.169.254/latest/meta-data"}, "url"),
        ({"url": "http://does-not-resolve.invalid/x"}, "url"),
        ({"url": "http://[abc/x"}, "url"),
        ({"event_types": ["job.exploded"]}, "event_types"),
        ({"event_types": []}, "event_types"),
    ],
)
def test_unusable_webhooks_are_refused_naming_the_field(
    hooks_api: TestClient, change: dict[str, Any], field: str
) -> None:
    answer = hooks_api.post("/v1/webhooks", json={**HOOK, **change})
    assert answer.status_code == 422, answer.text
    assert field in answer.json()["detail"][0]["loc"]


def test_loopback_is_refused_where_the_deployment_does_not_allow_list_it(
    make_api: Callable[..., TestClient],
) -> None:
    answer = make_api().post("/v1/webhooks", json=HOOK)
    assert answer.status_code == 422 and "loopback" in answer.text


def test_deliveries_list_the_events_of_finished_jobs(
    hooks_api: TestClient, ledger_url: Callable[[TestClient], str]
) -> None:
    hook = hooks_api.post("/v1/webhooks", json=HOOK).json()
    job = hooks_api.post(
        "/v1/jobs/train", json={"dataset": "digits", "hyperparameters": {"epochs": 1}}
    ).json()
    with session_scope(ledger_url(hooks_api)) as session:
        assert jobs.claim_job(session, job["id"], "w", 60)
        jobs.finish_job(session, job["id"], JobState.SUCCEEDED)
    [delivery] = hooks_api.get(f"/v1/webhooks/{hook['id']}/deliveries").json()
    assert (delivery["event_type"], delivery["job_id"], delivery["state"]) == (
        "job.succeeded",
        job["id"],
        "pending",
    )
    assert delivery["attempts"] == 0
