"""A model that memorises its training images is refused promotion and fails a privacy-gated sampling job.

The memoriser: one training image per digit class (20 images uploaded, split 1/1 per class), trained for
many epochs, so the decoder returns each class's one training image whatever the latent: its samples sit on
their training image and far from the held-out one (DCR share near 1).
"""

from __future__ import annotations

import io
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_digits

from tests.integration.test_schedules import _tick

pytestmark = pytest.mark.integration

HYPERPARAMETERS = {"epochs": 300, "beta": 0.01, "batch_size": 32, "learning_rate": 3e-3}


def _memorisable_upload(stack: Any) -> str:
    digits = load_digits()
    picks = np.concatenate([np.flatnonzero(digits.target == c)[:2] for c in range(10)])
    buffer = io.BytesIO()
    np.savez(buffer, images=(digits.images[picks] * 255 / 16).astype(np.uint8), labels=digits.target[picks])
    uploaded = stack.client._http.post(
        "/v1/datasets", files={"file": ("twenty.npz", buffer.getvalue(), "application/octet-stream")}
    )
    assert uploaded.status_code == 201, uploaded.text
    return str(uploaded.json()["id"])


def _finished(stack: Any, job_id: str) -> dict[str, Any]:
    try:
        stack.client.wait(job_id, timeout=240, poll=0.2, max_poll=1.0)
    except Exception:  # noqa: BLE001 - a FAILED job is what some tests expect; its row says why
        pass
    return dict(stack.client.get(job_id))


def test_a_memorising_model_is_refused_promotion_and_fails_a_gated_sampling_job(start_stack) -> None:
    stack = start_stack()
    train = {
        "dataset": {"kind": "uploaded", "id": _memorisable_upload(stack)},
        "hyperparameters": HYPERPARAMETERS,
    }
    schedule = stack.client.create_schedule(
        {
            "name": "memoriser",
            "cron": "*/5 * * * *",
            "model_name": "memoriser",
            "train": train,
            "policy": {"max_dcr_share": 0.6},
        }
    )
    _tick(stack, datetime.fromisoformat(schedule["next_due_at"]) + timedelta(seconds=1))
    run = stack.client.schedule_runs(schedule["id"])[0]
    trained = _finished(stack, run["job_id"])
    assert trained["state"] == "SUCCEEDED", trained.get("error")
    privacy = trained["result"]["metrics"]["privacy"]
    assert privacy["pixels"]["dcr_share"] > 0.8, privacy
    assert "fidelity" in trained["result"]["metrics"]

    run = stack.client.schedule_runs(schedule["id"])[0]
    assert run["outcome"] == "kept", run
    assert "exceeds the policy's max_dcr_share 0.6000" in run["decision"]["reason"]

    model_id = trained["result"]["model_id"]
    gated = stack.client.submit_sample(
        {"model": model_id, "per_class": 5, "privacy": {"max_dcr_share": 0.55}}
    )
    failed = _finished(stack, gated["id"])
    assert failed["state"] == "FAILED"
    assert "privacy gate: dcr share" in failed["error"] and "exceeds max_dcr_share 0.5500" in failed["error"]

    ungated = _finished(stack, stack.client.submit_sample({"model": model_id, "per_class": 5})["id"])
    assert ungated["state"] == "SUCCEEDED"
    assert ungated["result"]["privacy"]["pixels"]["dcr_share"] > 0.8
    assert ungated["result"]["fidelity"]["extractor"].startswith("evaluation-classifier:")
