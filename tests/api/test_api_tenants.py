"""Tokens and tenants: every endpoint but /healthz and /metrics needs a token; a tenant sees only its own."""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable

import numpy as np
import pytest
from fastapi.testclient import TestClient

from synthjobs.auth import create_token, revoke_token
from synthjobs.db import session_scope
from synthjobs.registry import register_model

TRAIN = {"dataset": "digits", "hyperparameters": {"epochs": 1}}
DIGITS = {"class_names": [str(i) for i in range(10)], "image_shape": [1, 8, 8]}


@pytest.fixture
def api(make_api: Callable[..., TestClient]) -> TestClient:
    return make_api(token_cache_seconds=0)  # a revoked token must be refused at once in these tests


@pytest.fixture
def tokens(api: TestClient, ledger_url: Callable[[TestClient], str]) -> dict[str, str]:
    with session_scope(ledger_url(api)) as session:
        return {tenant: create_token(session, tenant) for tenant in ("acme", "globex")}


def as_tenant(api: TestClient, token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _npz() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, images=np.zeros((6, 8, 8), np.uint8), labels=np.array([0, 0, 1, 1, 2, 2]))
    return buffer.getvalue()


def _acme_resources(api: TestClient, ledger_url: Callable[[TestClient], str], acme: dict[str, str]) -> dict:
    job = api.post("/v1/jobs/train", json=TRAIN, headers=acme).json()
    with session_scope(ledger_url(api)) as session:
        model = register_model(
            session,
            model_id=str(uuid.uuid4()),
            name="acme-cvae",
            training_job_id=None,
            checkpoint_uri="file:///nowhere/model.pt",
            hyperparameters={},
            metrics={},
            dataset=DIGITS,
            tenant="acme",
        )
        model_id = model.id
    api.put("/v1/models/acme-cvae/aliases/champion", json={"version": 1}, headers=acme).raise_for_status()
    dataset = api.post("/v1/datasets", files={"file": ("d.npz", _npz())}, headers=acme).json()
    schedule = api.post(
        "/v1/schedules",
        headers=acme,
        json={"name": "nightly", "cron": "0 3 * * *", "model_name": "acme-cvae", "train": TRAIN},
    ).json()
    return {"job": job["id"], "model": model_id, "dataset": dataset["id"], "schedule": schedule["id"]}


def test_requests_without_a_valid_token_are_refused_with_401(
    api: TestClient, tokens: dict[str, str], ledger_url: Callable[[TestClient], str]
) -> None:
    anonymous = {"Authorization": ""}
    assert api.get("/v1/jobs", headers=anonymous).status_code == 401
    assert api.get("/v1/jobs", headers={"Authorization": "Bearer not-a-token"}).status_code == 401
    assert api.get("/v1/jobs", headers={"Authorization": f"Basic {tokens['acme']}"}).status_code == 401
    response = api.post("/v1/jobs/train", json=TRAIN, headers=anonymous)
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    assert api.get("/v1/jobs", headers=as_tenant(api, tokens["acme"])).status_code == 200
    with session_scope(ledger_url(api)) as session:
        assert revoke_token(session, tokens["acme"])
    assert api.get("/v1/jobs", headers=as_tenant(api, tokens["acme"])).status_code == 401
    assert api.get("/healthz", headers=anonymous).status_code == 200


def test_another_tenants_resources_answer_404_on_every_endpoint(
    api: TestClient, tokens: dict[str, str], ledger_url: Callable[[TestClient], str]
) -> None:
    acme, globex = as_tenant(api, tokens["acme"]), as_tenant(api, tokens["globex"])
    ids = _acme_resources(api, ledger_url, acme)
    probes = [
        ("GET", f"/v1/jobs/{ids['job']}", None),
        ("GET", f"/v1/jobs/{ids['job']}/events", None),
        ("POST", f"/v1/jobs/{ids['job']}/cancel", None),
        ("GET", f"/v1/jobs/{ids['job']}/artifacts", None),
        ("GET", f"/v1/jobs/{ids['job']}/artifacts/manifest.json", None),
        ("GET", f"/v1/models/{ids['model']}", None),
        ("GET", "/v1/models/acme-cvae:1", None),
        ("GET", "/v1/models/acme-cvae@champion", None),
        ("PUT", "/v1/models/acme-cvae/aliases/champion", {"model_id": ids["model"]}),
        ("PUT", "/v1/models/acme-cvae/aliases/champion", {"version": 1}),
        ("DELETE", "/v1/models/acme-cvae/aliases/champion", None),
        ("POST", "/v1/models/acme-cvae/aliases/champion/rollback", None),
        ("GET", f"/v1/datasets/{ids['dataset']}", None),
        ("GET", f"/v1/schedules/{ids['schedule']}", None),
        ("PATCH", f"/v1/schedules/{ids['schedule']}", {"paused": True}),
        ("DELETE", f"/v1/schedules/{ids['schedule']}", None),
        ("GET", f"/v1/schedules/{ids['schedule']}/runs", None),
    ]
    for method, path, body in probes:
        response = api.request(method, path, json=body, headers=globex)
        assert response.status_code == 404, (
            f"{method} {path} answered {response.status_code}: {response.text}"
        )
    assert (
        api.post("/v1/jobs/sample", json={"model": ids["model"], "per_class": 1}, headers=globex).status_code
        == 422
    )
    body = {"dataset": {"kind": "uploaded", "id": ids["dataset"]}}
    assert api.post("/v1/jobs/train", json=body, headers=globex).status_code == 422
    assert api.get("/v1/jobs", headers=globex).json()["items"] == []
    assert api.get("/v1/models", headers=globex).json()["items"] == []
    assert api.get("/v1/datasets", headers=globex).json() == []
    assert api.get("/v1/schedules", headers=globex).json() == []
    assert api.get(f"/v1/jobs/{ids['job']}", headers=acme).json()["state"] == "QUEUED", "nothing was touched"
    assert api.get("/v1/models/acme-cvae@champion", headers=acme).status_code == 200


def test_tenants_number_their_model_versions_apart(
    api: TestClient, tokens: dict[str, str], ledger_url: Callable[[TestClient], str]
) -> None:
    with session_scope(ledger_url(api)) as session:
        for tenant in ("acme", "globex", "acme"):
            register_model(
                session,
                model_id=str(uuid.uuid4()),
                name="shared-name",
                training_job_id=None,
                checkpoint_uri="file:///m.pt",
                hyperparameters={},
                metrics={},
                dataset=DIGITS,
                tenant=tenant,
            )
    versions = [
        m["version"] for m in api.get("/v1/models", headers=as_tenant(api, tokens["acme"])).json()["items"]
    ]
    assert sorted(versions) == [1, 2]
    assert [
        m["version"] for m in api.get("/v1/models", headers=as_tenant(api, tokens["globex"])).json()["items"]
    ] == [1]


def test_server_owned_fields_are_rejected(api: TestClient) -> None:
    for field, value in (("state", "SUCCEEDED"), ("tenant", "globex"), ("attempts", 0), ("id", "x")):
        response = api.post("/v1/jobs/train", json={**TRAIN, field: value})
        assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["body", field]


def test_same_idempotency_key_returns_the_original_and_a_different_body_conflicts(api: TestClient) -> None:
    key = {"Idempotency-Key": "nightly-2026-11-27"}
    first = api.post("/v1/jobs/train", json=TRAIN, headers=key)
    again = api.post("/v1/jobs/train", json=TRAIN, headers=key)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["id"] == first.json()["id"]
    conflict = api.post("/v1/jobs/train", json={**TRAIN, "seed": 9}, headers=key)
    assert conflict.status_code == 409
    assert len(api.get("/v1/jobs").json()["items"]) == 1


def test_submit_rate_and_concurrency_limits_answer_429_with_retry_after(
    make_api: Callable[..., TestClient],
) -> None:
    api = make_api(max_submits_per_minute=2)
    assert [api.post("/v1/jobs/train", json=TRAIN).status_code for _ in range(2)] == [202, 202]
    limited = api.post("/v1/jobs/train", json=TRAIN)
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0
    api = make_api(max_concurrent_jobs=1)
    assert api.post("/v1/jobs/train", json=TRAIN).status_code == 202
    limited = api.post("/v1/jobs/train", json=TRAIN)
    assert limited.status_code == 429 and "queued or running" in limited.json()["detail"]


def test_another_tenants_delete_of_a_job_is_404_and_deletes_nothing(
    api: TestClient, tokens: dict[str, str]
) -> None:
    acme, globex = as_tenant(api, tokens["acme"]), as_tenant(api, tokens["globex"])
    job_id = api.post("/v1/jobs/train", json=TRAIN, headers=acme).json()["id"]
    response = api.delete(f"/v1/jobs/{job_id}", headers=globex)
    assert response.status_code == 404, response.text
    job = api.get(f"/v1/jobs/{job_id}", headers=acme).json()
    assert (job["state"], job["delete_requested_at"], job["deleted_at"]) == ("QUEUED", None, None)
    assert api.delete(f"/v1/jobs/{job_id}", headers=acme).status_code == 200
