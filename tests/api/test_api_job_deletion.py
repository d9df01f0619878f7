"""DELETE /v1/jobs/{id} and the per-tenant storage quota, on the embedded default (SQLite, a folder)."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from synthjobs.ledger import jobs, shards
from synthjobs.ledger.db import session_scope
from synthjobs.ledger.registry import model_id_for_job, register_model
from synthjobs.ledger.tables import JobState

TRAIN = {"dataset": "digits", "hyperparameters": {"epochs": 1}}
BYTES_PER_DIGIT = 8 * 8 + 8  # 1×8×8 uint8 pixels and an int64 label, in npz


def _finish_sampling(api: TestClient, url: str, job_id: str, sizes: list[int]) -> list[str]:
    """Play the worker: write each shard to the app's storage, record it, and end the job SUCCEEDED."""
    storage = api.app.state.storage  # type: ignore[attr-defined]
    keys = []
    with session_scope(url) as session:
        for index, size in enumerate(sizes):
            key = shards.shard_key(job_id, index, "npz")
            storage.put_bytes(key, b"x" * size)
            assert shards.claim_shard(session, job_id, index, "w", 60, 5) is not None
            shards.complete_shard(
                session, job_id, index, "w", key=key, sha256="0" * 64, size=size, seconds=0, quality={}
            )
            keys.append(key)
        storage.put_bytes(f"jobs/{job_id}/manifest.json", b"{}")
        jobs.finish_job(session, job_id, JobState.SUCCEEDED)
        jobs.record_output_bytes(session, job_id, 2)
    return keys


def test_delete_of_a_finished_job_removes_its_outputs_and_keeps_the_row_marked(
    make_api: Callable[..., TestClient],
    add_model: Callable[..., str],
    ledger_url: Callable[[TestClient], str],
) -> None:
    api = make_api()
    job = api.post("/v1/jobs/sample", json={"model": add_model(api), "per_class": 2, "shard_size": 10})
    job_id = job.json()["id"]
    keys = _finish_sampling(api, ledger_url(api), job_id, [30, 40])
    storage = api.app.state.storage  # type: ignore[attr-defined]

    response = api.delete(f"/v1/jobs/{job_id}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["deletion"], body["removed_objects"], body["removed_bytes"]) == ("done", 3, 72)
    assert not any(storage.exists(key) for key in keys) and storage.list_keys(f"jobs/{job_id}/") == []
    shown = api.get(f"/v1/jobs/{job_id}").json()
    assert shown["deleted_at"] is not None and shown["result"]["deleted"]["bytes"] == 72
    assert api.get("/v1/jobs").json()["items"] == []
    assert [j["id"] for j in api.get("/v1/jobs?include_deleted=true").json()["items"]] == [job_id]
    assert api.get(f"/v1/jobs/{job_id}/artifacts").json() == []
    again = api.delete(f"/v1/jobs/{job_id}")
    assert again.status_code == 200 and again.json()["removed_objects"] == 0


def test_delete_of_a_queued_job_cancels_it_first(make_api: Callable[..., TestClient]) -> None:
    api = make_api()
    job_id = api.post("/v1/jobs/train", json=TRAIN).json()["id"]
    response = api.delete(f"/v1/jobs/{job_id}")
    assert response.status_code == 200 and response.json()["deletion"] == "done"
    assert response.json()["state"] == "CANCELLED"
    kinds = [e["kind"] for e in api.get(f"/v1/jobs/{job_id}/events").json()]
    assert kinds == ["submitted", "cancelled", "delete_requested", "deleted"]


def test_delete_of_a_job_whose_model_is_registered_is_refused_with_409(
    make_api: Callable[..., TestClient], ledger_url: Callable[[TestClient], str]
) -> None:
    api = make_api()
    job_id = api.post("/v1/jobs/train", json=TRAIN).json()["id"]
    with session_scope(ledger_url(api)) as session:
        jobs.claim_job(session, job_id, "w", 60)
        register_model(
            session,
            model_id=model_id_for_job(job_id),
            name="digits-cvae",
            training_job_id=job_id,
            checkpoint_uri="file:///nowhere/checkpoint.pt",
            hyperparameters={},
            metrics={},
            dataset={},
        )
        jobs.finish_job(session, job_id, JobState.SUCCEEDED)
    response = api.delete(f"/v1/jobs/{job_id}")
    assert response.status_code == 409 and "digits-cvae:1" in response.json()["detail"]
    assert api.get(f"/v1/jobs/{job_id}").json()["deleted_at"] is None


def test_a_sampling_job_larger_than_the_whole_quota_is_refused_with_413_and_the_figure(
    make_api: Callable[..., TestClient], add_model: Callable[..., str]
) -> None:
    api = make_api(max_storage_bytes_per_tenant=5_000)
    response = api.post("/v1/jobs/sample", json={"model": add_model(api), "per_class": 10})
    assert response.status_code == 413
    detail = response.json()["detail"]
    assert f"{100 * BYTES_PER_DIGIT} bytes" in detail and "5000" in detail


def test_a_tenant_over_its_quota_gets_429_until_it_deletes_something(
    make_api: Callable[..., TestClient], add_model: Callable[..., str]
) -> None:
    api = make_api(max_storage_bytes_per_tenant=10_000)
    body: dict[str, Any] = {"model": add_model(api), "per_class": 10}  # 7,200 bytes planned
    first = api.post("/v1/jobs/sample", json=body)
    assert first.status_code == 202, first.text
    assert first.json()["params"]["planned_bytes"] == 100 * BYTES_PER_DIGIT
    refused = api.post("/v1/jobs/sample", json=body)
    assert refused.status_code == 429
    assert "stores 7200 bytes of its 10000-byte quota" in refused.json()["detail"]
    assert "7200 more" in refused.json()["detail"]
    assert api.delete(f"/v1/jobs/{first.json()['id']}").status_code == 200
    assert api.post("/v1/jobs/sample", json=body).status_code == 202


def test_uploads_and_training_count_against_the_storage_quota(make_api: Callable[..., TestClient]) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, images=np.zeros((50, 8, 8), np.uint8), labels=np.arange(50) % 3)
    npz = buffer.getvalue()
    api = make_api(max_storage_bytes_per_tenant=len(npz) - 1)
    too_big = api.post("/v1/datasets", files={"file": ("d.npz", npz)})
    assert too_big.status_code == 413 and str(len(npz)) in too_big.json()["detail"]

    api = make_api(max_storage_bytes_per_tenant=len(npz))
    assert api.post("/v1/datasets", files={"file": ("d.npz", npz)}).status_code == 201
    again = api.post("/v1/datasets", files={"file": ("e.npz", npz)})
    assert again.status_code == 429 and f"stores {len(npz)} bytes" in again.json()["detail"]
    assert api.post("/v1/jobs/train", json=TRAIN).status_code == 429, "a full tenant cannot start training"


def test_cancel_of_a_sampling_job_lists_what_it_left_behind(
    make_api: Callable[..., TestClient],
    add_model: Callable[..., str],
    ledger_url: Callable[[TestClient], str],
) -> None:
    api = make_api()
    job_id = api.post(
        "/v1/jobs/sample", json={"model": add_model(api), "per_class": 3, "shard_size": 10}
    ).json()["id"]
    with session_scope(ledger_url(api)) as session:
        assert shards.claim_shard(session, job_id, 0, "w", 60, 5) is not None
        key = shards.shard_key(job_id, 0, "npz")
        shards.complete_shard(
            session, job_id, 0, "w", key=key, sha256="0" * 64, size=9, seconds=0, quality={}
        )
    cancelled = api.post(f"/v1/jobs/{job_id}/cancel").json()
    left = cancelled["result"]["left_behind"]
    assert left["objects"] == [{"key": key, "bytes": 9}] and left["bytes"] == 9
