"""Sampling requests against a registered model, the model registry routes, OpenAPI and /healthz."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from synthjobs.ledger import jobs
from synthjobs.ledger.db import session_scope

AddModel = Callable[..., str]
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


def _only_error(response: Any) -> dict[str, Any]:
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    return error  # type: ignore[no-any-return]


# --- POST /v1/jobs/sample -------------------------------------------------------------------------------


def test_sample_with_an_unknown_model_is_refused_on_the_model_field(api: TestClient) -> None:
    error = _only_error(api.post("/v1/jobs/sample", json={"model": "digits-cvae:1", "per_class": 5}))
    assert error["loc"] == ["body", "model"] and "digits-cvae:1" in error["msg"]
    error = _only_error(api.post("/v1/jobs/sample", json={"model": UNKNOWN_ID, "per_class": 5}))
    assert error["loc"] == ["body", "model"]


def test_sample_with_a_per_class_map_counts_in_label_order(api: TestClient, add_model: AddModel) -> None:
    model_id = add_model(api)
    response = api.post("/v1/jobs/sample", json={"model": model_id, "per_class": {"3": 5, "7": 2}})
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["state"] == "QUEUED" and job["kind"] == "sample"
    assert job["params"]["counts"] == [0, 0, 0, 5, 0, 0, 0, 2, 0, 0]
    assert job["params"]["model_id"] == model_id and job["params"]["model"] == "digits-cvae:1"
    assert api.get(f"/v1/jobs/{job['id']}").json()["params"] == job["params"]


def test_sample_by_name_and_version_pins_the_model_id(api: TestClient, add_model: AddModel) -> None:
    add_model(api)
    second = add_model(api)
    add_model(api, name="other")
    body = {"model": "digits-cvae:2", "per_class": 4, "seed": 9, "temperature": 0.5, "shard_size": 7}
    params = api.post("/v1/jobs/sample", json=body).json()["params"]
    assert params["model_id"] == second and params["model"] == "digits-cvae:2"
    assert params["counts"] == [4] * 10
    assert (params["seed"], params["temperature"], params["shard_size"]) == (9, 0.5, 7)


def test_sample_without_a_shard_size_uses_the_deployment_default(
    make_api: Callable[..., TestClient], add_model: AddModel
) -> None:
    api = make_api(default_shard_size=33)
    add_model(api)
    params = api.post("/v1/jobs/sample", json={"model": "digits-cvae:1", "per_class": 1}).json()["params"]
    assert params["shard_size"] == 33


def test_per_class_with_an_unknown_class_name_names_the_class(api: TestClient, add_model: AddModel) -> None:
    add_model(api)
    for key in ("bogus", "10", "-1"):
        body = {"model": "digits-cvae:1", "per_class": {"3": 1, key: 1}}
        error = _only_error(api.post("/v1/jobs/sample", json=body))
        assert error["loc"] == ["body", "per_class", key] and repr(key) in error["msg"]


@pytest.mark.parametrize(
    ("per_class", "loc"),
    [
        (0, ["body", "per_class"]),
        (-3, ["body", "per_class"]),
        ({"3": 0}, ["body", "per_class"]),
        ({}, ["body", "per_class"]),
        ({"3": -1}, ["body", "per_class", "3"]),
    ],
)
def test_per_class_asking_for_nothing_is_refused(
    api: TestClient, add_model: AddModel, per_class: Any, loc: list[str]
) -> None:
    add_model(api)
    error = _only_error(api.post("/v1/jobs/sample", json={"model": "digits-cvae:1", "per_class": per_class}))
    assert error["loc"] == loc


def test_total_above_the_deployment_limit_names_the_limit(
    make_api: Callable[..., TestClient], add_model: AddModel
) -> None:
    api = make_api(max_samples_per_job=100)
    add_model(api)
    error = _only_error(api.post("/v1/jobs/sample", json={"model": "digits-cvae:1", "per_class": 11}))
    assert error["loc"] == ["body", "per_class"] and "110" in error["msg"] and "limit of 100" in error["msg"]
    assert api.post("/v1/jobs/sample", json={"model": "digits-cvae:1", "per_class": 10}).status_code == 202


def test_shard_size_above_the_deployment_limit_names_the_limit(
    make_api: Callable[..., TestClient], add_model: AddModel
) -> None:
    api = make_api(max_shard_size=50)
    add_model(api)
    body = {"model": "digits-cvae:1", "per_class": 1, "shard_size": 51}
    error = _only_error(api.post("/v1/jobs/sample", json=body))
    assert error["loc"] == ["body", "shard_size"] and "limit of 50" in error["msg"]
    assert api.post("/v1/jobs/sample", json={**body, "shard_size": 50}).status_code == 202


@pytest.mark.parametrize(
    ("extra", "loc"),
    [
        ({"temperature": 0}, ["body", "temperature"]),
        ({"seed": -1}, ["body", "seed"]),
        ({"shard_size": 0}, ["body", "shard_size"]),
        ({"format": "png"}, ["body", "format"]),
        ({"counts": [1] * 10}, ["body", "counts"]),
        ({"model": ""}, ["body", "model"]),
    ],
)
def test_invalid_sample_values_are_refused(
    api: TestClient, add_model: AddModel, extra: dict[str, Any], loc: list[str]
) -> None:
    add_model(api)
    body = {"model": "digits-cvae:1", "per_class": 1, **extra}
    assert _only_error(api.post("/v1/jobs/sample", json=body))["loc"] == loc


@pytest.mark.parametrize("amounts", [{}, {"per_class": 1, "total": 10}])
def test_sample_needs_exactly_one_of_per_class_and_total(
    api: TestClient, add_model: AddModel, amounts: dict[str, Any]
) -> None:
    add_model(api)
    error = _only_error(api.post("/v1/jobs/sample", json={"model": "digits-cvae:1", **amounts}))
    assert error["loc"] == ["body", "per_class"] and "exactly one" in error["msg"]


def test_sample_total_is_split_uniformly_over_the_classes(api: TestClient, add_model: AddModel) -> None:
    add_model(api)
    response = api.post("/v1/jobs/sample", json={"model": "digits-cvae:1", "total": 25})
    assert response.status_code == 202, response.text
    counts = response.json()["params"]["counts"]
    assert sum(counts) == 25 and sorted(set(counts)) == [2, 3]


def test_sample_total_follows_the_distribution(api: TestClient, add_model: AddModel) -> None:
    add_model(api)
    body = {"model": "digits-cvae:1", "total": 7, "distribution": {"3": 0.5, "8": 0.5}}
    counts = api.post("/v1/jobs/sample", json=body).json()["params"]["counts"]
    assert sum(counts) == 7 and sorted([counts[3], counts[8]]) == [3, 4]
    assert all(count == 0 for i, count in enumerate(counts) if i not in (3, 8))


@pytest.mark.parametrize(
    ("distribution", "loc"),
    [
        ({"bogus": 1.0}, ["body", "distribution", "bogus"]),
        ({"3": -0.5, "4": 1.0}, ["body", "distribution", "3"]),
        ({"3": 0.0}, ["body", "distribution"]),
        ("normal", ["body", "distribution"]),
    ],
)
def test_invalid_distribution_is_refused(
    api: TestClient, add_model: AddModel, distribution: Any, loc: list[str]
) -> None:
    add_model(api)
    body = {"model": "digits-cvae:1", "total": 10, "distribution": distribution}
    response = api.post("/v1/jobs/sample", json=body)
    assert response.status_code == 422
    assert loc in [error["loc"][: len(loc)] for error in response.json()["detail"]]


@pytest.mark.parametrize(
    ("distribution", "total"),
    [({"0": 0.5}, "0.5"), ({"3": 0.5, "8": 0.6}, "1.1"), ({"3": 2, "8": 1}, "3"), ({"3": 1e-12}, "1e-12")],
)
def test_distribution_whose_proportions_do_not_sum_to_one_is_refused_naming_the_sum(
    api: TestClient, add_model: AddModel, distribution: dict[str, float], total: str
) -> None:
    add_model(api)
    body = {"model": "digits-cvae:1", "total": 10, "distribution": distribution}
    error = _only_error(api.post("/v1/jobs/sample", json=body))
    assert error["loc"] == ["body", "distribution"]
    assert f"sum to {total}," in error["msg"]


def test_distribution_may_leave_classes_out_when_its_proportions_sum_to_one(
    api: TestClient, add_model: AddModel
) -> None:
    add_model(api)
    body = {"model": "digits-cvae:1", "total": 10, "distribution": {"1": 0.1, "2": 0.2, "3": 0.7}}
    response = api.post("/v1/jobs/sample", json=body)
    assert response.status_code == 202, response.text
    assert response.json()["params"]["counts"] == [0, 1, 2, 7, 0, 0, 0, 0, 0, 0]


def test_tstr_quality_for_a_model_without_its_training_dataset_is_refused(
    api: TestClient, add_model: AddModel
) -> None:
    add_model(api)  # registered without the spec of the data it was trained on
    body = {"model": "digits-cvae:1", "per_class": 5, "quality": "tstr"}
    error = _only_error(api.post("/v1/jobs/sample", json=body))
    assert error["loc"] == ["body", "quality"] and "no dataset" in error["msg"]


def test_tstr_quality_for_a_model_with_its_training_dataset_is_accepted(
    api: TestClient, add_model: AddModel
) -> None:
    digits = {"class_names": [str(i) for i in range(10)], "image_shape": [1, 8, 8]}
    add_model(api, dataset={**digits, "spec": {"kind": "builtin", "name": "digits"}})
    body = {"model": "digits-cvae:1", "per_class": 5, "quality": "tstr"}
    response = api.post("/v1/jobs/sample", json=body)
    assert response.status_code == 202, response.text
    assert response.json()["params"]["quality"] == "tstr"


def test_samples_are_shuffled_within_shards_unless_asked_not_to(api: TestClient, add_model: AddModel) -> None:
    add_model(api)
    default = api.post("/v1/jobs/sample", json={"model": "digits-cvae:1", "per_class": 5})
    off = api.post("/v1/jobs/sample", json={"model": "digits-cvae:1", "per_class": 5, "shuffle": False})
    assert default.json()["params"]["shuffle"] is True and off.json()["params"]["shuffle"] is False


@pytest.mark.parametrize("weight", ["NaN", "Infinity"])
def test_non_finite_distribution_is_refused(
    make_api: Callable[..., TestClient], add_model: AddModel, weight: str
) -> None:
    api = make_api(raise_server_exceptions=False)
    add_model(api)
    body = '{"model": "digits-cvae:1", "total": 10, "distribution": {"3": WEIGHT, "4": 1}}'
    body = body.replace("WEIGHT", weight)  # httpx json= refuses NaN, but Python clients send it by default
    response = api.post("/v1/jobs/sample", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422


def test_per_class_with_a_unicode_digit_key_is_refused(
    make_api: Callable[..., TestClient], add_model: AddModel
) -> None:
    api = make_api(raise_server_exceptions=False)
    add_model(api)
    body = {"model": "digits-cvae:1", "per_class": {"\u00b2": 1}}
    assert _only_error(api.post("/v1/jobs/sample", json=body))["loc"] == ["body", "per_class", "\u00b2"]


def test_sample_with_a_unicode_digit_version_is_refused(
    make_api: Callable[..., TestClient], add_model: AddModel
) -> None:
    api = make_api(raise_server_exceptions=False)
    add_model(api)
    body = {"model": "digits-cvae:\u00b2", "per_class": 1}
    assert _only_error(api.post("/v1/jobs/sample", json=body))["loc"] == ["body", "model"]


def test_per_class_naming_one_class_twice_does_not_drop_samples(api: TestClient, add_model: AddModel) -> None:
    add_model(api)
    response = api.post("/v1/jobs/sample", json={"model": "digits-cvae:1", "per_class": {"3": 5, "03": 2}})
    assert response.status_code == 422 or sum(response.json()["params"]["counts"]) == 7


# --- /v1/models -----------------------------------------------------------------------------------------


def test_models_are_listed_newest_first_and_filtered_by_name(api: TestClient, add_model: AddModel) -> None:
    first, second = add_model(api), add_model(api)
    other = add_model(api, name="other")
    listed = api.get("/v1/models").json()["items"]
    assert [m["id"] for m in listed] == [other, second, first]
    by_name = api.get("/v1/models", params={"name": "digits-cvae"}).json()["items"]
    assert [(m["id"], m["version"]) for m in by_name] == [(second, 2), (first, 1)]
    assert by_name[0]["dataset"]["class_names"] == [str(i) for i in range(10)]
    assert api.get("/v1/models", params={"name": "missing"}).json() == {"items": []}


def test_model_is_readable_by_id(api: TestClient, add_model: AddModel) -> None:
    model_id = add_model(api)
    model = api.get(f"/v1/models/{model_id}").json()
    assert model["id"] == model_id and model["name"] == "digits-cvae" and model["version"] == 1
    assert model["checkpoint_uri"].endswith("model.pt") and model["metrics"] == {"heldout_neg_elbo": 25.0}


@pytest.mark.parametrize("model_id", [UNKNOWN_ID, "not-a-uuid", "digits-cvae:9"])
def test_unknown_model_is_404(api: TestClient, add_model: AddModel, model_id: str) -> None:
    add_model(api)
    assert api.get(f"/v1/models/{model_id}").status_code == 404


@pytest.mark.parametrize("params", [{"name": "Bad Name"}, {"limit": 0}, {"limit": 501}])
def test_invalid_model_list_query_is_refused(api: TestClient, params: dict[str, Any]) -> None:
    assert api.get("/v1/models", params=params).status_code == 422


# --- OpenAPI --------------------------------------------------------------------------------------------


def test_openapi_lists_every_route_with_examples_for_both_request_bodies(api: TestClient) -> None:
    schema = api.get("/openapi.json").json()
    expected = {
        "/v1/jobs/train": {"post"},
        "/v1/jobs/sample": {"post"},
        "/v1/jobs/{job_id}": {"get"},
        "/v1/jobs": {"get"},
        "/v1/jobs/{job_id}/events": {"get"},
        "/v1/models": {"get"},
        "/v1/models/{model_id}": {"get"},
        "/healthz": {"get"},
    }
    for path, methods in expected.items():
        assert path in schema["paths"], path
        assert methods <= set(schema["paths"][path]), path
    components = schema["components"]["schemas"]
    for request in ("TrainRequest", "SampleRequest"):
        examples = components[request]["examples"]
        assert examples and all(isinstance(example, dict) and example for example in examples)
    assert all("model" in example for example in components["SampleRequest"]["examples"])
    summaries = [op.get("summary") for item in schema["paths"].values() for op in item.values()]
    assert all(summaries), "every handler carries a one-line docstring as its summary"


def test_openapi_declares_the_bearer_scheme_on_every_route_but_healthz_and_metrics(api: TestClient) -> None:
    schema = api.get("/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert [s for s in schemes.values() if s == {**s, "type": "http", "scheme": "bearer"}], schemes
    (name,) = schemes
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            public = path in ("/healthz", "/metrics")
            optional = path == "/v1/jobs/{job_id}/artifacts/{name}"  # a signed link or the token
            expected = None if public else [{name: []}, {}] if optional else [{name: []}]
            assert operation.get("security") == expected, (method, path)
            assert ("401" in operation["responses"]) is not public, (method, path)


def test_openapi_lists_the_idempotency_key_header_on_the_submitting_posts(api: TestClient) -> None:
    paths = api.get("/openapi.json").json()["paths"]
    for path in ("/v1/jobs/train", "/v1/jobs/sample", "/v1/datasets"):
        headers = [p for p in paths[path]["post"]["parameters"] if p["in"] == "header"]
        assert [p["name"] for p in headers] == ["Idempotency-Key"], path
        assert headers[0]["required"] is False


def test_a_bad_idempotency_key_is_still_the_apis_own_422(api: TestClient) -> None:
    response = api.post("/v1/jobs/train", json={}, headers={"Idempotency-Key": "x" * 201})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]


def test_requests_without_a_bearer_token_keep_the_401_body(api: TestClient) -> None:
    for headers in ({"Authorization": ""}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer  "}):
        response = api.get("/v1/jobs", headers=headers)
        assert response.status_code == 401, headers
        assert response.json() == {"detail": "a valid 'Authorization: Bearer <token>' header is required"}
        assert response.headers["www-authenticate"] == "Bearer"


# --- /healthz -------------------------------------------------------------------------------------------


def test_healthz_reports_every_dependency_ok(api: TestClient) -> None:
    response = api.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "broker": "ok", "storage": "ok"}}


def test_healthz_names_unwritable_storage_as_down(
    make_api: Callable[..., TestClient], tmp_path: Path
) -> None:
    (tmp_path / "a-file").write_bytes(b"")
    api = make_api(storage_url=(tmp_path / "a-file" / "storage").as_uri())
    response = api.get("/healthz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks == {"database": "ok", "broker": "ok", "storage": "down"}, "no path or error text"


@pytest.fixture
def api_without_broker(make_api: Callable[..., TestClient]) -> TestClient:
    """The API with its broker URL on a port nothing listens on."""
    return make_api(broker_url="redis://127.0.0.1:1/0", enqueue_timeout=0.5)


def test_healthz_names_a_broker_outage(api_without_broker: TestClient) -> None:
    response = api_without_broker.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded" and body["checks"]["broker"] == "down"
    assert body["checks"]["database"] == "ok" and body["checks"]["storage"] == "ok"


def test_train_during_a_broker_outage_is_still_accepted_and_queued(
    api_without_broker: TestClient, ledger_url: Callable[[TestClient], str]
) -> None:
    started = time.monotonic()
    response = api_without_broker.post("/v1/jobs/train", json={"hyperparameters": {"epochs": 2}})
    assert time.monotonic() - started < 5, "a broker outage must not hang the request"
    assert response.status_code == 202 and response.json()["state"] == "QUEUED"
    with session_scope(ledger_url(api_without_broker)) as session:
        job = jobs.get_job(session, response.json()["id"])
        assert job.state == "QUEUED" and job.params["config"]["epochs"] == 2
