"""Downloads without storage credentials, and submits that scripts can safely retry."""

from __future__ import annotations

import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from synthjobs.settings import get_settings
from synthjobs_client.cli import main as cli
from synthjobs_client.errors import DownloadError

pytestmark = pytest.mark.integration
TRAIN = {"dataset": "digits", "hyperparameters": {"epochs": 2}, "seed": 1}


def _succeeded(stack: Any, job_id: str) -> dict[str, Any]:
    try:
        return stack.client.wait(job_id, timeout=180, poll=0.2, max_poll=1.0)
    except Exception as exc:
        pytest.fail(f"job {job_id} did not succeed: {exc}\n{stack.log_tail()}")


def _sample_job(stack: Any) -> dict[str, Any]:
    model = _succeeded(stack, stack.client.submit_train(TRAIN)["id"])["result"]["model_id"]
    return _succeeded(
        stack, stack.client.submit_sample({"model": model, "per_class": 30, "shard_size": 100})["id"]
    )


def test_download_fetches_every_output_and_checks_it_against_the_manifest(
    start_stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = start_stack(extra_env={"SYNTHJOBS_PRESIGN_SECONDS": "2"})
    job = _sample_job(stack)
    paths = stack.client.download(job["id"], tmp_path / "out")
    names = sorted(p.name for p in paths)
    assert names == ["grid.png", "manifest.json", "shard-00000.npz", "shard-00001.npz", "shard-00002.npz"]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert (
        hashlib.sha256((tmp_path / "out/shard-00001.npz").read_bytes()).hexdigest()
        == manifest["shards"][1]["sha256"]
    )

    link = next(a["url"] for a in stack.client.artifacts(job["id"]) if a["name"] == "shard-00000.npz")
    assert "signature=" in link
    assert httpx.get(link).status_code == 200, "a signed link needs no token"
    tampered = link[:-1] + ("0" if link[-1] != "0" else "1")
    assert httpx.get(tampered).status_code == 403
    assert httpx.get(link.split("?")[0]).status_code == 401, (
        "without a signature the bearer token is required"
    )
    time.sleep(3)
    assert httpx.get(link).status_code == 403, "an expired link is refused"
    api_log = (stack.logs / "api.log").read_text()
    assert "/artifacts/shard-00000.npz?[REDACTED]" in api_log and link.split("?")[1] not in api_log, (
        "the access log keeps no usable link"
    )

    storage = Path(stack.env["SYNTHJOBS_HOME"]) / "storage" / "jobs" / job["id"]
    (storage / "shard-00002.npz").write_bytes(b"tampered")
    with pytest.raises(DownloadError):
        stack.client.download(job["id"], tmp_path / "again")
    monkeypatch.setenv("SYNTHJOBS_API_TOKEN", stack.env["SYNTHJOBS_ADMIN_TOKEN"])
    get_settings.cache_clear()
    try:
        code = cli(["--api-url", stack.api_url, "download", job["id"], str(tmp_path / "cli")])
    finally:
        get_settings.cache_clear()
    assert code == 1, "a shard that differs from the manifest fails the download"


def test_s3_artifacts_come_with_presigned_urls(start_stack, s3_endpoint, s3_bucket, tmp_path: Path) -> None:
    stack = start_stack(storage_url=f"s3://{s3_bucket}/out", s3_endpoint=s3_endpoint)
    job = _sample_job(stack)
    artifacts = stack.client.artifacts(job["id"])
    assert all("X-Amz-Signature=" in a["url"] and a["expires_in"] > 0 for a in artifacts)
    paths = stack.client.download(job["id"], tmp_path)
    assert len(paths) == 5


def test_twenty_concurrent_identical_submits_make_one_job(start_stack, postgres_url, redis_url) -> None:
    stack = start_stack(database_url=postgres_url, broker_url=redis_url, workers=0)
    headers = {"Authorization": f"Bearer {stack.env['SYNTHJOBS_ADMIN_TOKEN']}", "Idempotency-Key": "retry-me"}

    def submit(_: int) -> httpx.Response:
        return httpx.post(f"{stack.api_url}/v1/jobs/train", json=TRAIN, headers=headers, timeout=30)

    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(submit, range(20)))
    assert sorted({r.status_code for r in responses}) in ([200, 202], [202])
    assert [r.status_code for r in responses].count(202) == 1
    assert len({r.json()["id"] for r in responses}) == 1
    assert len(stack.client.list(kind="train")["items"]) == 1
