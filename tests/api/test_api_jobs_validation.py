"""Submitting, reading and listing jobs over HTTP: what is accepted, and the 4xx for what is not."""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from synthjobs.ledger import jobs
from synthjobs.ledger.db import session_scope

TRAIN = {"dataset": "digits", "hyperparameters": {"epochs": 2}, "seed": 7}
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


def _published(client: TestClient) -> list[dict[str, Any]]:
    """The task messages kombu's SQLAlchemy transport holds in the broker's SQLite file.

    The file exists (empty, mode 0600) from the start; kombu makes its tables on first use.
    """
    home: Path = client.app.state.settings.home  # type: ignore[attr-defined]
    with sqlite3.connect(home / "broker.db") as broker:
        tables = broker.execute("SELECT name FROM sqlite_master WHERE name = 'kombu_message'").fetchall()
        rows = broker.execute("SELECT payload FROM kombu_message ORDER BY id").fetchall() if tables else []
    messages = []
    for (payload,) in rows:
        envelope = json.loads(payload)
        args, kwargs, _ = json.loads(base64.b64decode(envelope["body"]))
        messages.append({"task": envelope["headers"]["task"], "args": args, "kwargs": kwargs})
    return messages


def _only_error(response: Any) -> dict[str, Any]:
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    return error  # type: ignore[no-any-return]


def test_valid_train_request_is_accepted_queued_and_readable(api: TestClient) -> None:
    response = api.post("/v1/jobs/train", json=TRAIN)
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["state"] == "QUEUED" and job["kind"] == "train" and job["id"]
    assert job["params"]["model_name"] == "digits-cvae"
    config = job["params"]["config"]
    assert config["seed"] == 7 and config["epochs"] == 2
    assert (config["conditioning"], config["latent_dim"], config["batch_size"]) == ("concat", 16, 32)
    read = api.get(f"/v1/jobs/{job['id']}")
    # GET of one job adds why it waits (nothing ahead of it, no worker has taken it yet).
    waiting = {"reason": "waiting for a free worker", "position": 1}
    assert read.status_code == 200 and read.json() == {**job, "wait": waiting}
    events = api.get(f"/v1/jobs/{job['id']}/events").json()
    assert [event["kind"] for event in events] == ["submitted"]


def test_train_request_publishes_only_the_job_id_to_the_broker(api: TestClient) -> None:
    first = api.post("/v1/jobs/train", json=TRAIN).json()["id"]
    second = api.post("/v1/jobs/train", json={"model_name": "mine"}).json()["id"]
    assert _published(api) == [
        {"task": "synthjobs.train", "args": [], "kwargs": {"job_id": first}},
        {"task": "synthjobs.train", "args": [], "kwargs": {"job_id": second}},
    ]


def test_empty_train_request_uses_the_defaults(api: TestClient) -> None:
    response = api.post("/v1/jobs/train", json={})
    assert response.status_code == 202
    config = response.json()["params"]["config"]
    assert (config["epochs"], config["batch_size"], config["latent_dim"], config["beta"]) == (
        100,
        32,
        16,
        0.5,
    )
    # The API's defaults mirror TrainConfig's (the API cannot import training; the test can).
    from training.config import TrainConfig

    defaults = TrainConfig().to_dict()
    assert {k: v for k, v in config.items() if k in defaults and k not in ("seed", "dataset")} == {
        k: defaults[k] for k in config if k in defaults and k not in ("seed", "dataset")
    }


def test_priority_is_stored_and_shown_and_an_unknown_one_is_refused(api: TestClient) -> None:
    assert api.post("/v1/jobs/train", json=TRAIN).json()["priority"] == "normal"
    high = api.post("/v1/jobs/train", json={**TRAIN, "priority": "high"}).json()
    assert high["priority"] == "high" and api.get(f"/v1/jobs/{high['id']}").json()["priority"] == "high"
    error = _only_error(api.post("/v1/jobs/train", json={**TRAIN, "priority": "urgent"}))
    assert error["loc"] == ["body", "priority"]
    assert _only_error(api.post("/v1/jobs/sample", json={"model": "m", "priority": 3}))["loc"] == [
        "body",
        "priority",
    ]


@pytest.mark.parametrize("field", ["state", "attempts", "foo", "progress", "id"])
def test_unknown_top_level_field_is_refused_by_name(api: TestClient, field: str) -> None:
    error = _only_error(api.post("/v1/jobs/train", json={**TRAIN, field: "x"}))
    assert error["loc"] == ["body", field] and error["type"] == "extra_forbidden"


def test_unknown_hyperparameter_is_refused_by_name(api: TestClient) -> None:
    error = _only_error(api.post("/v1/jobs/train", json={"hyperparameters": {"epoch": 3}}))
    assert error["loc"] == ["body", "hyperparameters", "epoch"]


def test_epochs_above_the_deployment_limit_names_the_limit(make_api: Callable[..., TestClient]) -> None:
    api = make_api(max_epochs=5)
    error = _only_error(api.post("/v1/jobs/train", json={"hyperparameters": {"epochs": 6}}))
    assert error["loc"] == ["body", "hyperparameters", "epochs"]
    assert "limit of 5" in error["msg"] and "6" in error["msg"]
    assert api.post("/v1/jobs/train", json={"hyperparameters": {"epochs": 5}}).status_code == 202
    assert api.get("/v1/jobs").json()["items"][0]["params"]["config"]["epochs"] == 5


@pytest.mark.parametrize(
    ("setting", "field", "value"),
    [
        ("max_batch_size", "batch_size", 129),
        ("max_latent_dim", "latent_dim", 129),
        ("max_hidden_dim", "hidden_dim", 129),
    ],
)
def test_other_hyperparameters_above_their_limit_are_refused(
    make_api: Callable[..., TestClient], setting: str, field: str, value: int
) -> None:
    api = make_api(**{setting: 128})
    error = _only_error(api.post("/v1/jobs/train", json={"hyperparameters": {field: value}}))
    assert error["loc"] == ["body", "hyperparameters", field] and "limit of 128" in error["msg"]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"hyperparameters": {"conditioning": "bogus"}}, ["body", "hyperparameters", "conditioning"]),
        ({"seed": -1}, ["body", "seed"]),
        ({"seed": 2**63}, ["body", "seed"]),
        ({"model_name": "Bad Name"}, ["body", "model_name"]),
        ({"hyperparameters": {"epochs": 0}}, ["body", "hyperparameters", "epochs"]),
        ({"hyperparameters": {"learning_rate": 0}}, ["body", "hyperparameters", "learning_rate"]),
        ({"hyperparameters": {"beta": -0.1}}, ["body", "hyperparameters", "beta"]),
        ({"hyperparameters": {"epochs": "many"}}, ["body", "hyperparameters", "epochs"]),
    ],
)
def test_invalid_train_values_are_refused(api: TestClient, body: dict[str, Any], loc: list[str]) -> None:
    assert _only_error(api.post("/v1/jobs/train", json=body))["loc"] == loc


def test_unknown_dataset_name_is_refused(api: TestClient) -> None:
    response = api.post("/v1/jobs/train", json={"dataset": "mnist"})
    assert response.status_code == 422
    assert all(error["loc"][:2] == ["body", "dataset"] for error in response.json()["detail"])


def test_refused_requests_write_and_publish_nothing(api: TestClient) -> None:
    api.post("/v1/jobs/train", json={"seed": -1})
    api.post("/v1/jobs/train", json={"state": "SUCCEEDED"})
    assert api.get("/v1/jobs").json() == {"items": [], "next_cursor": None}
    assert not (api.app.state.settings.home / "broker.db").exists() or _published(api) == []  # type: ignore[attr-defined]


def test_body_that_is_not_json_is_refused(api: TestClient) -> None:
    response = api.post("/v1/jobs/train", content=b"epochs=3", headers={"content-type": "application/json"})
    assert response.status_code == 422


@pytest.mark.parametrize("job_id", [UNKNOWN_ID, "not-a-uuid", "x" * 300])
def test_unknown_job_id_is_404(api: TestClient, job_id: str) -> None:
    response = api.get(f"/v1/jobs/{job_id}")
    assert response.status_code == 404 and job_id in response.json()["detail"]
    assert api.get(f"/v1/jobs/{job_id}/events").status_code == 404


def test_list_pages_through_every_job_newest_first(api: TestClient) -> None:
    ids = [api.post("/v1/jobs/train", json={"seed": i}).json()["id"] for i in range(5)]
    seen, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = api.get("/v1/jobs", params=params).json()
        seen.append([job["id"] for job in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [len(page) for page in seen] == [2, 2, 1]
    assert [job_id for page in seen for job_id in page] == ids[::-1]


def test_list_filters_by_state_and_kind(api: TestClient, ledger_url: Callable[[TestClient], str]) -> None:
    ids = [api.post("/v1/jobs/train", json={}).json()["id"] for _ in range(3)]
    with session_scope(ledger_url(api)) as session:
        jobs.claim_job(session, ids[1], "w", 60)
    assert [j["id"] for j in api.get("/v1/jobs", params={"state": "RUNNING"}).json()["items"]] == [ids[1]]
    assert len(api.get("/v1/jobs", params={"state": "QUEUED", "kind": "train"}).json()["items"]) == 2
    assert api.get("/v1/jobs", params={"kind": "sample"}).json()["items"] == []


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"cursor": "!!!"}, ["query", "cursor"]),
        ({"cursor": "bm90LWEtY3Vyc29y"}, ["query", "cursor"]),
        ({"cursor": "c" * 201}, ["query", "cursor"]),
        ({"limit": 0}, ["query", "limit"]),
        ({"limit": 501}, ["query", "limit"]),
        ({"limit": "ten"}, ["query", "limit"]),
        ({"state": "bogus"}, ["query", "state"]),
        ({"kind": "bogus"}, ["query", "kind"]),
    ],
)
def test_invalid_list_query_is_refused(api: TestClient, params: dict[str, Any], loc: list[str]) -> None:
    api.post("/v1/jobs/train", json={})
    assert _only_error(api.get("/v1/jobs", params=params))["loc"] == loc


def test_cursor_with_a_naive_timestamp_is_refused(make_api: Callable[..., TestClient]) -> None:
    api = make_api(raise_server_exceptions=False)
    cursor = base64.urlsafe_b64encode(b"2024-05-01T12:00:00|abc").decode().rstrip("=")
    assert _only_error(api.get("/v1/jobs", params={"cursor": cursor}))["loc"] == ["query", "cursor"]
