"""Oversized bodies get 413 and bodies of the wrong type 415, before a route reads them."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

TRAIN = {"dataset": "digits", "hyperparameters": {"epochs": 1}}


def test_oversized_json_body_is_refused_with_413(make_api: Callable[..., TestClient]) -> None:
    api = make_api(max_request_bytes=2048)
    response = api.post("/v1/jobs/train", json={**TRAIN, "model_name": "x" * 4000})
    assert response.status_code == 413 and "limit of 2048 bytes" in response.json()["detail"]


def test_oversized_chunked_body_without_length_is_refused_with_413(
    make_api: Callable[..., TestClient],
) -> None:
    api = make_api(max_request_bytes=2048)

    def chunks():  # type: ignore[no-untyped-def]
        yield b'{"dataset": "digits", "model_name": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}'

    response = api.post("/v1/jobs/train", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_wrong_content_type_is_refused_with_415(make_api: Callable[..., TestClient]) -> None:
    api = make_api()
    response = api.post("/v1/jobs/train", content=b"dataset=digits", headers={"content-type": "text/plain"})
    assert response.status_code == 415 and "application/json" in response.json()["detail"]
    upload = api.post("/v1/datasets", json={"file": "x"})
    assert upload.status_code == 415 and "multipart/form-data" in upload.json()["detail"]


def test_bodiless_posts_need_no_content_type(make_api: Callable[..., TestClient]) -> None:
    api = make_api()
    job = api.post("/v1/jobs/train", json=TRAIN).json()
    assert api.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200
