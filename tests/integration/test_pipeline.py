"""The whole pipeline on real processes: HTTP API → SQL → broker → Celery worker → training/ → storage."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from synthjobs_client.errors import ClientError, JobFailed

pytestmark = pytest.mark.integration

TRAIN_BODY = {"dataset": "digits", "hyperparameters": {"epochs": 2}, "seed": 7}


def _wait(stack: Any, job_id: str, timeout: float = 180) -> dict[str, Any]:
    try:
        return stack.client.wait(job_id, timeout=timeout, poll=0.2, max_poll=1.0)
    except Exception as exc:
        pytest.fail(f"job {job_id} did not succeed: {exc}\n{stack.log_tail()}")


def _train_and_sample(stack: Any, per_class: int = 30, shard_size: int = 120) -> tuple[dict, dict]:
    queued = stack.client.submit_train(TRAIN_BODY)
    assert queued["state"] == "QUEUED"
    trained = _wait(stack, queued["id"])
    assert trained["result"]["model_version"] == 1
    model_ref = f"{trained['result']['model_name']}:{trained['result']['model_version']}"
    body = {"model": model_ref, "per_class": per_class, "seed": 3, "shard_size": shard_size}
    sampled = _wait(stack, stack.client.submit_sample(body)["id"])
    return trained, sampled


def _check_shards(manifest: dict[str, Any], read: Any, per_class: int) -> None:
    counts = np.zeros(10, dtype=np.int64)
    for shard in manifest["shards"]:
        payload = read(shard["key"])
        assert hashlib.sha256(payload).hexdigest() == shard["sha256"]
        with np.load(io.BytesIO(payload)) as data:
            images, labels = data["images"], data["labels"]
        assert images.dtype == np.uint8 and images.shape[1:] == (8, 8)
        assert labels.dtype == np.int64 and len(labels) == len(images) == shard["count"]
        assert images.max() > images.min(), "images must not be blank"
        counts += np.bincount(labels, minlength=10)
    assert counts.tolist() == [per_class] * 10
    assert manifest["produced_per_class"] == manifest["requested_per_class"] == [per_class] * 10


def test_train_then_sample_on_redis_and_s3(
    start_stack, database_url, redis_url, s3_endpoint, s3_bucket, s3_client
) -> None:
    stack = start_stack(
        database_url=database_url,
        broker_url=redis_url,
        storage_url=f"s3://{s3_bucket}/runs",
        s3_endpoint=s3_endpoint,
    )
    trained, sampled = _train_and_sample(stack)

    model = stack.client.model(trained["result"]["model_id"])
    assert model["checkpoint_uri"].startswith(f"s3://{s3_bucket}/runs/models/{model['id']}/")
    assert model["metrics"]["heldout_neg_elbo"] > 0
    assert len(sampled["result"]["output_uris"]) == 3  # 300 samples in shards of 120

    def read(key: str) -> bytes:
        return s3_client.get_object(Bucket=s3_bucket, Key=f"runs/{key}")["Body"].read()

    manifest = json.loads(read(f"jobs/{sampled['id']}/manifest.json"))
    _check_shards(manifest, read, per_class=30)


def test_train_then_sample_on_the_embedded_default(start_stack) -> None:
    stack = start_stack()
    _, sampled = _train_and_sample(stack, per_class=20, shard_size=1000)
    storage = Path(stack.env["SYNTHJOBS_HOME"]) / "storage"
    assert sampled["result"]["manifest_uri"] == f"jobs/{sampled['id']}/manifest.json", "a key, not a path"
    manifest = json.loads((storage / f"jobs/{sampled['id']}/manifest.json").read_text())
    _check_shards(manifest, lambda key: (storage / key).read_bytes(), per_class=20)


def test_job_reports_progress_events_and_timestamps(start_stack) -> None:
    stack = start_stack()
    job = _wait(stack, stack.client.submit_train(TRAIN_BODY)["id"])
    assert job["progress"] == 1.0 and job["attempts"] == 1
    assert job["created_at"] <= job["started_at"] <= job["finished_at"]
    kinds = [event["kind"] for event in stack.client.events(job["id"])]
    assert kinds[:2] == ["submitted", "claimed"] and kinds.count("epoch") == 2 and kinds[-1] == "succeeded"
    listed = stack.client.list(kind="train", state="SUCCEEDED")
    assert [item["id"] for item in listed["items"]] == [job["id"]]


def test_sampling_from_a_corrupt_checkpoint_fails_with_a_readable_reason(start_stack) -> None:
    stack = start_stack()
    trained = _wait(stack, stack.client.submit_train(TRAIN_BODY)["id"])
    storage = Path(stack.env["SYNTHJOBS_HOME"]) / "storage"
    (storage / f"models/{trained['result']['model_id']}/checkpoint.pt").write_bytes(b"not a checkpoint")

    job = stack.client.submit_sample({"model": trained["result"]["model_id"], "per_class": 5})
    with pytest.raises(JobFailed) as failed:
        stack.client.wait(job["id"], timeout=120, poll=0.2)
    assert failed.value.job["state"] == "FAILED"
    assert "checkpoint" in failed.value.job["error"].lower()
    assert stack.workers[0].poll() is None, "a failing job must not kill the worker"


def test_sampling_an_unknown_model_is_rejected(start_stack) -> None:
    stack = start_stack()
    with pytest.raises(ClientError) as rejected:
        stack.client.submit_sample({"model": "nope:1", "per_class": 5})
    assert rejected.value.status == 422
    assert rejected.value.detail[0]["loc"] == ["body", "model"]
