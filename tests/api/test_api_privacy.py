"""hyperparameters.privacy: accepted with its defaults filled in, refused with a 422 naming the field."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient


def _train(privacy: Any) -> dict[str, Any]:
    return {"dataset": "digits", "hyperparameters": {"epochs": 2, "privacy": privacy}}


def test_privacy_request_is_queued_with_its_defaults(api: TestClient) -> None:
    response = api.post("/v1/jobs/train", json=_train({"epsilon": 10}))
    assert response.status_code == 202, response.text
    privacy = response.json()["params"]["config"]["privacy"]
    assert privacy == {"epsilon": 10.0, "delta": 1e-5, "max_grad_norm": 1.0}


def test_train_request_without_privacy_is_not_private(api: TestClient) -> None:
    response = api.post("/v1/jobs/train", json={"dataset": "digits", "hyperparameters": {"epochs": 2}})
    assert response.status_code == 202, response.text
    assert response.json()["params"]["config"]["privacy"] is None


@pytest.mark.parametrize(
    "privacy, field, reason",
    [
        ({}, "epsilon", "Field required"),
        ({"epsilon": 0}, "epsilon", "greater than 0"),
        ({"epsilon": 1000}, "epsilon", "less than or equal to 100"),
        ({"epsilon": 1, "delta": 0.5}, "delta", "less than or equal to 0.01"),
        ({"epsilon": 1, "delta": 0}, "delta", "greater than 0"),
        ({"epsilon": 1, "max_grad_norm": 1e9}, "max_grad_norm", "less than or equal to 1000"),
        ({"epsilon": 1, "sigma": 3}, "sigma", "Extra inputs are not permitted"),
    ],
)
def test_bad_privacy_request_is_a_422_naming_the_field(
    api: TestClient, privacy: dict[str, Any], field: str, reason: str
) -> None:
    response = api.post("/v1/jobs/train", json=_train(privacy))
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"][-2:] == ["privacy", field] and reason in error["msg"]


def test_non_finite_epsilon_is_a_422(api: TestClient) -> None:
    body = b'{"dataset": "digits", "hyperparameters": {"privacy": {"epsilon": NaN}}}'
    response = api.post("/v1/jobs/train", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
