"""hyperparameters.eval_every: 1 by default, bounded, refused with a 422 naming the field."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient


def _train(**hyper: Any) -> dict[str, Any]:
    return {"dataset": "digits", "hyperparameters": {"epochs": 2, **hyper}}


def test_eval_every_defaults_to_every_epoch(api: TestClient) -> None:
    response = api.post("/v1/jobs/train", json=_train())
    assert response.status_code == 202, response.text
    assert response.json()["params"]["config"]["eval_every"] == 1


def test_eval_every_is_passed_to_the_worker(api: TestClient) -> None:
    response = api.post("/v1/jobs/train", json=_train(eval_every=5))
    assert response.status_code == 202, response.text
    assert response.json()["params"]["config"]["eval_every"] == 5


@pytest.mark.parametrize(
    "value, reason",
    [
        (0, "greater than or equal to 1"),
        (100_001, "less than or equal to 100000"),
        (1.5, "valid integer"),
        ("often", "valid integer"),
    ],
)
def test_bad_eval_every_is_a_422_naming_the_field(api: TestClient, value: Any, reason: str) -> None:
    response = api.post("/v1/jobs/train", json=_train(eval_every=value))
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"][-1] == "eval_every" and reason in error["msg"], error
