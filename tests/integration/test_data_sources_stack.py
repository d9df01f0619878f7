"""Tenants train only on their own data sources, on the real stack (API, Celery worker, PostgreSQL, moto S3).

The API refuses another tenant's folder or the service's own outputs at submit, and the worker refuses them
again: a job whose params were changed in the ledger after submit fails, naming none of the other tenant's
objects.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from sqlalchemy import update

from synthjobs.ledger.db import session_scope
from synthjobs.ledger.tables import Job
from synthjobs.ledger.tokens import create_token
from synthjobs_client.client import Client
from synthjobs_client.errors import ClientError, JobFailed

pytestmark = pytest.mark.integration

KEYS = {"access_key_id_env": "AWS_ACCESS_KEY_ID", "secret_access_key_env": "AWS_SECRET_ACCESS_KEY"}


def _put_folder(s3_client: Any, bucket: str, prefix: str, classes: tuple[str, ...]) -> None:
    from PIL import Image

    rng = np.random.default_rng(len(prefix))
    for class_name in classes:
        for index in range(6):
            buffer = io.BytesIO()
            Image.fromarray((rng.random((16, 16)) * 255).astype(np.uint8)).save(buffer, format="PNG")
            key = f"{prefix}/{class_name}/img-{index}.png"
            s3_client.put_object(Bucket=bucket, Key=key, Body=buffer.getvalue())


def _folder(url: str) -> dict[str, Any]:
    return {"dataset": {"kind": "image_folder", "url": url}, "hyperparameters": {"epochs": 1}}


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    made: list[Client] = []
    yield made
    for client in made:
        client.close()


def test_a_tenant_cannot_train_on_another_tenants_folder_or_the_service_outputs(
    postgres_url: str,
    start_stack: Any,
    s3_endpoint: str,
    s3_bucket: str,
    s3_client: Any,
    clients: list[Client],
) -> None:
    _put_folder(s3_client, s3_bucket, "acme/shapes", ("circle", "square"))
    _put_folder(s3_client, s3_bucket, "globex/shapes", ("circle", "square"))
    sources = {tenant: [{"url": f"s3://{s3_bucket}/{tenant}", **KEYS}] for tenant in ("acme", "globex")}
    stack = start_stack(
        database_url=postgres_url,
        storage_url=f"s3://{s3_bucket}/service",
        s3_endpoint=s3_endpoint,
        workers=0,
        extra_env={"SYNTHJOBS_DATA_SOURCES": json.dumps(sources)},
    )
    with session_scope(postgres_url) as session:
        tokens = {tenant: create_token(session, tenant) for tenant in ("acme", "globex")}
    acme, globex = (Client(stack.api_url, token=tokens[t]) for t in ("acme", "globex"))
    clients.extend([acme, globex])

    acme_job = acme.submit_train(_folder(f"s3://{s3_bucket}/acme/shapes"))
    refused = [
        f"s3://{s3_bucket}/acme/shapes",
        f"s3://{s3_bucket}/service/models",
        f"s3://{s3_bucket}/service/jobs",
        "s3://some-other-bucket/shapes",
    ]
    for url in refused:
        with pytest.raises(ClientError) as error:
            globex.submit_train(_folder(url))
        assert error.value.status == 422, (url, error.value.detail)
        assert error.value.detail[0]["loc"] == ["body", "dataset", "url"]

    # Valid at submit, then pointed elsewhere in the ledger before any worker runs: the worker checks again.
    tampered = {
        url: globex.submit_train(_folder(f"s3://{s3_bucket}/globex/shapes"))["id"]
        for url in (f"s3://{s3_bucket}/acme/shapes", f"s3://{s3_bucket}/service/models")
    }
    with session_scope(postgres_url) as session:
        for url, job_id in tampered.items():
            params = {**session.get(Job, job_id).params, "dataset": {"kind": "image_folder", "url": url}}
            session.execute(update(Job).where(Job.id == job_id).values(params=params))
    own = globex.submit_train(_folder(f"s3://{s3_bucket}/globex/shapes"))

    stack.start_worker()
    trained = acme.wait(acme_job["id"], timeout=240, poll=0.2, max_poll=1.0)
    assert list(acme.model(trained["result"]["model_id"])["dataset"]["class_names"]) == ["circle", "square"]
    for url, job_id in tampered.items():
        with pytest.raises(JobFailed) as failed:
            globex.wait(job_id, timeout=120, poll=0.2, max_poll=1.0)
        error = failed.value.job["error"] or ""
        expected = "service's own output storage" if "/service/" in url else "not under one of this tenant's"
        assert expected in error, error
        assert trained["result"]["model_id"] not in error and acme_job["id"] not in error, error
        assert "internal error" not in error
    assert globex.wait(own["id"], timeout=240, poll=0.2, max_poll=1.0)["state"] == "SUCCEEDED"
    assert [m["dataset"]["spec"]["url"] for m in globex.models()] == [f"s3://{s3_bucket}/globex/shapes"]
