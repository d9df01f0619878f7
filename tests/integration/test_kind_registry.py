"""A job kind and a dataset kind registered in one plugin module run end to end through the real API and a
real worker subprocess (`tests/integration/fake_kinds.py`, loaded by `SYNTHJOBS_PLUGINS`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PLUGIN_ENV = {"SYNTHJOBS_PLUGINS": "tests.integration.fake_kinds", "PYTHONPATH": str(REPO)}


def _post(stack: Any, path: str, body: dict[str, Any]) -> httpx.Response:
    headers = {"Authorization": f"Bearer {stack.env['SYNTHJOBS_ADMIN_TOKEN']}"}
    return httpx.post(f"{stack.api_url}{path}", json=body, headers=headers, timeout=30)


def _succeeded(stack: Any, job_id: str, timeout: float = 240) -> dict[str, Any]:
    try:
        job: dict[str, Any] = stack.client.wait(job_id, timeout=timeout, poll=0.2, max_poll=1.0)
    except Exception as exc:
        pytest.fail(f"job {job_id} did not succeed: {exc}\n{stack.log_tail()}")
    return job


def test_plugin_job_kind_runs_to_succeeded_with_its_artifact_listed(start_stack: Any) -> None:
    stack = start_stack(extra_env=PLUGIN_ENV)

    refused = _post(stack, "/v1/jobs/echo", {"message": "hi", "repeat": 5000})
    assert refused.status_code == 422, refused.text
    assert refused.json()["detail"][0]["loc"] == ["body", "repeat"]
    assert _post(stack, "/v1/jobs/echo", {"message": "hi", "colour": "red"}).status_code == 422

    submitted = _post(stack, "/v1/jobs/echo", {"message": "hello", "repeat": 3})
    assert submitted.status_code == 202, submitted.text
    assert submitted.json()["kind"] == "echo"

    job = _succeeded(stack, submitted.json()["id"], timeout=120)
    assert job["result"]["lines"] == 3
    artifacts = {a["name"]: a for a in stack.client.artifacts(job["id"])}
    assert set(artifacts) == {"echo.txt"}
    stored = stack.stored_path(f"jobs/{job['id']}/echo.txt")
    assert stored.read_text() == "hello\nhello\nhello\n"


def test_model_trains_end_to_end_on_a_plugin_dataset_kind(start_stack: Any) -> None:
    stack = start_stack(extra_env=PLUGIN_ENV)
    body = {
        "dataset": {"kind": "stripes", "classes": 3, "per_class": 30},
        "hyperparameters": {"epochs": 1, "hidden_dim": 32, "latent_dim": 2},
        "seed": 3,
    }
    refused = _post(stack, "/v1/jobs/train", {**body, "dataset": {"kind": "stripes", "classes": 99}})
    assert refused.status_code == 422, refused.text

    job = _succeeded(stack, stack.client.submit_train(body)["id"])
    assert job["result"]["model_name"] == "stripes-cvae", job["result"]
    (model,) = stack.client.models(name="stripes-cvae")
    assert model["dataset"]["name"] == "stripes:3x30"  # the kind's own label
    assert model["dataset"]["spec"]["kind"] == "stripes"
    assert model["dataset"]["class_names"] == ["stripe0", "stripe1", "stripe2"]
    assert model["dataset"]["image_shape"] == [1, 8, 8]
