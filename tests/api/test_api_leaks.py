"""What the API lets slip: signed links that outlive their deployment's limit, server paths, health details.

Signed download links use their own key (never the admin token) and live at most SYNTHJOBS_PRESIGN_SECONDS;
responses name local objects by storage key; /healthz says ok or down and nothing else.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from synthjobs.errors import ConfigurationError
from synthjobs.ledger import jobs
from synthjobs.ledger.db import session_scope
from synthjobs.ledger.tables import JobKind, JobState
from synthjobs.settings import Settings
from synthjobs.storage.local import LocalStorage

ADMIN_TOKEN = "test-admin-token"
TEN_YEARS = 10 * 365 * 24 * 3600


def _succeeded_job(client: TestClient, ledger_url: Callable[[TestClient], str]) -> str:
    """A SUCCEEDED sampling job whose outputs are really in the app's local storage."""
    storage: LocalStorage = client.app.state.storage  # type: ignore[attr-defined]
    with session_scope(ledger_url(client)) as session:
        job = jobs.create_job(session, JobKind.SAMPLE, {"model_id": "m", "seed": 0})
        job_id = job.id
    grid = storage.put_bytes(f"jobs/{job_id}/grid.png", b"png bytes")
    manifest = storage.put_bytes(f"jobs/{job_id}/manifest.json", b"{}")
    shard = storage.put_bytes(f"jobs/{job_id}/shard-00000.npz", b"npz bytes")
    with session_scope(ledger_url(client)) as session:
        jobs.claim_job(session, job_id, "w1", 60, 5)
        jobs.add_event(session, job_id, "uploaded", f"wrote {shard}", {"uri": shard})
        result = {"grid_uri": grid, "manifest_uri": manifest, "output_uris": [shard], "total": 1}
        jobs.finish_job(session, job_id, JobState.SUCCEEDED, result=result, worker="w1")
    return job_id


def _link(job_id: str, name: str, key: bytes, seconds: int) -> str:
    expires = int(time.time()) + seconds
    signature = hmac.new(key, f"{job_id}/{name}/{expires}".encode(), hashlib.sha256).hexdigest()
    return f"/v1/jobs/{job_id}/artifacts/{name}?expires={expires}&signature={signature}"


def test_a_signed_link_living_longer_than_presign_seconds_is_refused(
    make_api: Callable[..., TestClient], ledger_url: Callable[[TestClient], str]
) -> None:
    api = make_api(presign_seconds=300)
    job_id = _succeeded_job(api, ledger_url)
    key: bytes = api.app.state.signing_key  # type: ignore[attr-defined]
    anonymous = {"Authorization": ""}
    assert api.get(_link(job_id, "grid.png", key, 200), headers=anonymous).status_code == 200
    assert api.get(_link(job_id, "grid.png", key, TEN_YEARS), headers=anonymous).status_code == 403


def test_links_are_not_signed_with_the_admin_token(
    make_api: Callable[..., TestClient], ledger_url: Callable[[TestClient], str]
) -> None:
    api = make_api()
    job_id = _succeeded_job(api, ledger_url)
    forged = _link(job_id, "shard-00000.npz", ADMIN_TOKEN.encode(), 60)
    assert api.get(forged, headers={"Authorization": ""}).status_code == 403
    issued = next(a for a in api.get(f"/v1/jobs/{job_id}/artifacts").json() if a["name"] == "grid.png")
    assert api.get(issued["url"], headers={"Authorization": ""}).status_code == 200
    assert issued["expires_in"] == 300


def test_the_embedded_default_generates_one_private_signing_key(
    make_api: Callable[..., TestClient], tmp_path: Path
) -> None:
    first = make_api()
    key_file = tmp_path / "home0" / "signing-key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    again = create_app(first.app.state.settings)  # type: ignore[attr-defined]
    assert again.state.signing_key == first.app.state.signing_key  # type: ignore[attr-defined]
    assert len(again.state.signing_key) >= 32 and ADMIN_TOKEN.encode() not in again.state.signing_key
    again.state.sender.close()


def test_a_production_api_on_local_storage_will_not_start_without_a_signing_key(tmp_path: Path) -> None:
    production = {
        "home": tmp_path / "home",
        "database_url": f"sqlite:///{tmp_path / 'ledger.db'}",
        "broker_url": f"sqla+sqlite:///{tmp_path / 'broker.db'}",
        "storage_url": (tmp_path / "storage").as_uri(),
        "admin_token": ADMIN_TOKEN,
    }
    with pytest.raises(ConfigurationError, match="SYNTHJOBS_SIGNING_KEY"):
        create_app(Settings(**production))
    app = create_app(Settings(**production, signing_key="k" * 32))
    assert app.state.signing_key == b"k" * 32
    app.state.sender.close()


def test_responses_name_local_objects_by_key_never_by_server_path(
    api: TestClient, ledger_url: Callable[[TestClient], str]
) -> None:
    job_id = _succeeded_job(api, ledger_url)
    root = api.app.state.storage.inner.root  # type: ignore[attr-defined]
    job = api.get(f"/v1/jobs/{job_id}").json()
    assert job["result"]["manifest_uri"] == f"jobs/{job_id}/manifest.json"
    assert job["result"]["output_uris"] == [f"jobs/{job_id}/shard-00000.npz"]
    for path in (
        f"/v1/jobs/{job_id}",
        f"/v1/jobs/{job_id}/events",
        f"/v1/jobs/{job_id}/artifacts",
        "/v1/jobs",
    ):
        body = api.get(path).text
        assert str(root) not in body and "file://" not in body, f"{path}: {body}"


def test_uploaded_datasets_and_their_training_jobs_show_no_server_path(api: TestClient) -> None:
    npz = _tiny_npz()
    dataset = api.post("/v1/datasets", files={"file": ("tiny.npz", npz, "application/octet-stream")})
    assert dataset.status_code == 201, dataset.text
    root = str(api.app.state.storage.inner.root)  # type: ignore[attr-defined]
    assert root not in dataset.text and dataset.json()["uri"].startswith("datasets/")
    job = api.post("/v1/jobs/train", json={"dataset": {"kind": "uploaded", "id": dataset.json()["id"]}})
    assert job.status_code == 202, job.text
    assert root not in job.text and "file://" not in job.text


def _tiny_npz() -> bytes:
    import io

    import numpy as np

    buffer = io.BytesIO()
    rng = np.random.default_rng(0)
    np.savez(buffer, images=rng.integers(0, 255, (20, 8, 8), dtype=np.uint8), labels=np.arange(20) % 2)
    return buffer.getvalue()


def test_a_failed_job_shows_its_error_code(api: TestClient, ledger_url: Callable[[TestClient], str]) -> None:
    with session_scope(ledger_url(api)) as session:
        job_id = jobs.create_job(session, JobKind.TRAIN, {}).id
        jobs.finish_job(session, job_id, JobState.FAILED, error="loss is NaN", error_code="training_diverged")
    body: dict[str, Any] = api.get(f"/v1/jobs/{job_id}").json()
    assert (body["error"], body["error_code"]) == ("loss is NaN", "training_diverged")


def test_healthz_says_down_without_exception_text_or_endpoints(make_api: Callable[..., TestClient]) -> None:
    api = make_api(
        storage_url="s3://private-bucket/prefix",
        s3_endpoint_url="http://127.0.0.1:1",
        broker_url="redis://:hunter2pass@127.0.0.1:1/0",
        enqueue_timeout=0.5,
    )
    response = api.get("/healthz", headers={"Authorization": ""})
    assert response.status_code == 503
    assert response.json() == {
        "status": "degraded",
        "checks": {"database": "ok", "broker": "down", "storage": "down"},
    }
