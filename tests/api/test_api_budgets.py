"""Byte and model-size budgets at the API: refused at upload or submit with the figure and the limit."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

ApiFactory = Callable[..., TestClient]
AddModel = Callable[..., str]
# 3072 + 8 bytes a sample as npz
CIFAR_LIKE = {"class_names": [str(i) for i in range(10)], "image_shape": [3, 32, 32]}


def _error(response: Any, status: int = 422) -> dict[str, Any]:
    assert response.status_code == status, response.text
    (error,) = response.json()["detail"]
    return error  # type: ignore[no-any-return]


def _upload(api: TestClient, payload: bytes) -> Any:
    return api.post("/v1/datasets", files={"file": ("d.npz", payload, "application/octet-stream")})


def _npz(images: np.ndarray, labels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, images=images, labels=labels)
    return buffer.getvalue()


# --- Uploads: the decoded size, not the upload's --------------------------------------------------------


def test_a_zip_bomb_upload_is_refused_by_its_decoded_size(make_api: ApiFactory, zip_bomb: bytes) -> None:
    api = make_api(max_dataset_bytes=100_000_000)
    error = _error(_upload(api, zip_bomb), 413)
    assert error["loc"] == ["body", "file"]
    assert "134 MB" in error["msg"] and "limit is 100000000 bytes" in error["msg"]
    assert api.get("/v1/datasets").json() == []
    assert _upload(make_api(max_dataset_bytes=200_000_000), zip_bomb).status_code == 201


def test_an_upload_whose_header_outgrows_its_member_is_refused(api: TestClient, build_npz: Any) -> None:
    lying = build_npz({"images": ("|u1", (3000, 1000, 1000), 64), "labels": ("<i8", (3000,), 24000)})
    error = _error(_upload(api, lying))
    assert "images.npy declares" in error["msg"] and "(3000, 1000, 1000)" in error["msg"]
    negative = build_npz({"images": ("|u1", (-5, 8, 8), 0), "labels": ("<i8", (5,), 40)})
    assert "integers >= 0" in _error(_upload(api, negative))["msg"]


# --- Training: the model's parameters and activations ---------------------------------------------------


def test_a_model_too_large_for_the_deployment_is_refused_with_its_figure(api: TestClient) -> None:
    images = np.zeros((4, 1024, 1024), np.uint8)
    dataset = _upload(api, _npz(images, np.array([0, 0, 1, 1]))).json()
    body = {
        "dataset": {"kind": "uploaded", "id": dataset["id"]},
        "hyperparameters": {"hidden_dim": 8192, "architecture": "mlp", "batch_size": 1},
    }
    error = _error(api.post("/v1/jobs/train", json=body))
    assert error["loc"] == ["body", "hyperparameters", "hidden_dim"] and error["type"] == "limit"
    assert "model would have 1.7e10 parameters (68.7 GB" in error["msg"], error["msg"]
    assert "limit is 2e8" in error["msg"]
    assert api.get("/v1/jobs").json()["items"] == []


def test_a_torchvision_model_past_the_parameter_limit_is_refused(make_api: ApiFactory) -> None:
    api = make_api(max_model_parameters=1_000_000)
    root = str(api.app.state.settings.resolved_data_roots()[0])  # type: ignore[attr-defined]
    body: dict[str, Any] = {"dataset": {"kind": "torchvision", "name": "CIFAR10", "root": root}}
    body["hyperparameters"] = {"hidden_dim": 1024}
    error = _error(api.post("/v1/jobs/train", json=body))
    assert "8.5e6 parameters" in error["msg"] and "conv on 32x32x3 images" in error["msg"]
    assert "limit is 1e6" in error["msg"]
    body["hyperparameters"] = {"hidden_dim": 64}
    assert api.post("/v1/jobs/train", json=body).status_code == 202


def test_a_batch_past_the_activation_budget_is_refused_on_batch_size(make_api: ApiFactory) -> None:
    api = make_api(max_activation_bytes=10_000_000)
    error = _error(api.post("/v1/jobs/train", json={"hyperparameters": {"batch_size": 4096}}))
    assert error["loc"] == ["body", "hyperparameters", "batch_size"]
    assert "batch_size 4096 x 11.2 kB per image" in error["msg"]  # the default latent 16's activations
    assert "limit is 10 MB" in error["msg"]
    assert api.post("/v1/jobs/train", json={"hyperparameters": {"batch_size": 512}}).status_code == 202


# --- Sampling: shard and job output in bytes ------------------------------------------------------------


def test_a_shard_past_the_byte_limit_is_refused_with_its_size(
    make_api: ApiFactory, add_model: AddModel
) -> None:
    api = make_api(max_shard_bytes=10_000_000)
    add_model(api, dataset=CIFAR_LIKE)
    body = {"model": "digits-cvae:1", "per_class": 1000, "shard_size": 5000}
    error = _error(api.post("/v1/jobs/sample", json=body))
    assert error["loc"] == ["body", "shard_size"] and error["type"] == "limit"
    assert "about 15.4 MB (3080 bytes a sample as npz)" in error["msg"] and "3241 samples" in error["msg"]
    assert api.post("/v1/jobs/sample", json={**body, "shard_size": 3241}).status_code == 202
    webdataset = _error(
        api.post("/v1/jobs/sample", json={**body, "shard_size": 3241, "format": "webdataset"})
    )
    assert "as webdataset" in webdataset["msg"]


def test_the_default_shard_size_shrinks_to_fit_the_byte_limit(
    make_api: ApiFactory, add_model: AddModel
) -> None:
    api = make_api(max_shard_bytes=10_000_000)
    add_model(api, dataset=CIFAR_LIKE)
    job = api.post("/v1/jobs/sample", json={"model": "digits-cvae:1", "per_class": 1000}).json()
    assert job["params"]["shard_size"] == 3241


def test_a_job_past_the_output_limit_is_refused_on_the_count_it_gave(
    make_api: ApiFactory, add_model: AddModel
) -> None:
    api = make_api(max_job_output_bytes=50_000_000)
    add_model(api, dataset=CIFAR_LIKE)
    error = _error(api.post("/v1/jobs/sample", json={"model": "digits-cvae:1", "per_class": 2000}))
    assert error["loc"] == ["body", "per_class"]
    assert "20000 samples make about 61.6 MB of output" in error["msg"] and "50 MB per job" in error["msg"]
    error = _error(api.post("/v1/jobs/sample", json={"model": "digits-cvae:1", "total": 20000}))
    assert error["loc"] == ["body", "total"]
    assert api.post("/v1/jobs/sample", json={"model": "digits-cvae:1", "total": 15000}).status_code == 202
