"""A DP-SGD training job end to end: epsilon spent per epoch in the events, metrics and model card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synthjobs_client.errors import JobFailed

pytestmark = pytest.mark.integration
pytest.importorskip("opacus", reason="DP-SGD needs the 'dp' extra (opacus); `make install` installs it")


def test_private_training_job_records_epsilon_spent(start_stack) -> None:
    stack = start_stack()
    body = {"dataset": "digits", "hyperparameters": {"epochs": 2, "privacy": {"epsilon": 2}}, "seed": 3}
    job = stack.client.wait(stack.client.submit_train(body)["id"], timeout=240, poll=0.2, max_poll=1.0)
    events = [e for e in stack.client.events(job["id"]) if e["kind"] == "privacy"]
    spent = [e["data"]["epsilon_spent"] for e in events]
    assert len(spent) == 2 and 0 < spent[0] < spent[1] <= 2.0 + 1e-3, events
    metrics = job["result"]["metrics"]
    assert metrics["dp_epsilon_spent"] == spent[-1]
    card_key = job["result"]["model_card_uri"]
    card = json.loads((Path(stack.env["SYNTHJOBS_HOME"]) / "storage" / card_key).read_text())
    assert card["hyperparameters"]["privacy"] == {"epsilon": 2.0, "delta": 1e-5, "max_grad_norm": 1.0}
    assert card["metrics"]["dp_epsilon_spent"] == spent[-1]


def test_private_job_with_an_impossible_budget_fails_with_the_figures(start_stack) -> None:
    stack = start_stack()
    privacy = {"epsilon": 0.001, "delta": 1e-9}
    body = {"dataset": "digits", "hyperparameters": {"epochs": 200, "batch_size": 1000, "privacy": privacy}}
    with pytest.raises(JobFailed) as failed:
        stack.client.wait(stack.client.submit_train(body)["id"], timeout=120, poll=0.2)
    assert failed.value.job["error_code"] == "privacy_budget_exceeded"
    assert "epsilon 0.001 at delta 1e-09 cannot be met" in failed.value.job["error"]
