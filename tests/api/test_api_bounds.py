"""Huge integers, NaN, lone surrogates and NUL get a 422 naming the field, never a 500, on both databases.

JSON carries integers of any size (`10**400` parses to a Python int), `"\\ud800"` escapes that decode to a
lone surrogate (a str UTF-8, so PostgreSQL, a log line or a response body, cannot encode) and `"\\u0000"`,
which PostgreSQL's text columns refuse. Bodies are sent as raw JSON text, as a client would send them.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel, ValidationError
from sqlalchemy import func, select

from api.schemas import (
    AliasRequest,
    PolicyIn,
    SampleFollowUp,
    SampleRequest,
    SchedulePatch,
    ScheduleRequest,
    TrainRequest,
)
from synthjobs.ledger.db import session_scope
from synthjobs.ledger.tables import Job, Schedule

HUGE = 10**400
SURROGATE = "\ud800"
TRAIN = {"dataset": "digits", "hyperparameters": {"epochs": 2}}
SCHEDULE = {"name": "nightly", "cron": "0 3 * * *", "model_name": "digits-cvae", "train": TRAIN}
SAMPLE = {"model": "digits-cvae:1", "per_class": 2}


def _raw(body: Any) -> bytes:
    """`body` as JSON text: surrogates as `\\ud800` escapes, NaN and Infinity as Python's json writes them."""
    return json.dumps(body).encode()


def _locs(error: ValidationError) -> list[tuple[Any, ...]]:
    return [tuple(e["loc"]) for e in error.errors()]


# --- the schemas: every number bounded, every float finite, every string valid Unicode --------------


@pytest.mark.parametrize(
    ("model", "body", "loc"),
    [
        (TrainRequest, {"max_runtime_seconds": HUGE}, ("max_runtime_seconds",)),
        (TrainRequest, {"seed": HUGE}, ("seed",)),
        (TrainRequest, {"hyperparameters": {"epochs": HUGE}}, ("hyperparameters", "epochs")),
        (
            TrainRequest,
            {"hyperparameters": {"learning_rate": math.nan}},
            ("hyperparameters", "learning_rate"),
        ),
        (TrainRequest, {"hyperparameters": {"beta": math.inf}}, ("hyperparameters", "beta")),
        (SampleRequest, {**SAMPLE, "per_class": HUGE}, ("per_class",)),
        (SampleRequest, {**SAMPLE, "per_class": {"3": HUGE}}, ("per_class",)),
        (SampleRequest, {"model": "m", "total": HUGE}, ("total",)),
        (SampleRequest, {"model": "m", "total": 5, "distribution": {"3": math.inf}}, ("distribution",)),
        (SampleRequest, {"model": "m", "total": 5, "distribution": {"3": 1e300}}, ("distribution",)),
        (SampleRequest, {**SAMPLE, "temperature": math.nan}, ("temperature",)),
        (SampleRequest, {**SAMPLE, "shard_size": 2**31}, ("shard_size",)),
        (SampleRequest, {**SAMPLE, "quality_samples": HUGE}, ("quality_samples",)),
        (SampleFollowUp, {"total": HUGE}, ("total",)),
        (SampleFollowUp, {"per_class": HUGE}, ("per_class",)),
        (SampleFollowUp, {"shard_size": HUGE}, ("shard_size",)),
        (AliasRequest, {"version": 2**31}, ("version",)),
        (AliasRequest, {"version": HUGE}, ("version",)),
        (PolicyIn, {"min_tstr_gain": math.nan}, ("min_tstr_gain",)),
        (PolicyIn, {"max_dcr_share": 1.5}, ("max_dcr_share",)),
        (PolicyIn, {"max_near_copies": -0.1}, ("max_near_copies",)),
        (SampleRequest, {**SAMPLE, "privacy": {"max_dcr_share": math.nan}}, ("privacy", "max_dcr_share")),
        (SampleRequest, {**SAMPLE, "privacy": {"max_near_copies": 2}}, ("privacy", "max_near_copies")),
        (SampleRequest, {**SAMPLE, "privacy": {"max_dcr": 0.5}}, ("privacy", "max_dcr")),
        (SampleFollowUp, {"privacy": {"max_dcr_share": HUGE}}, ("privacy", "max_dcr_share")),
        (
            ScheduleRequest,
            {**SCHEDULE, "train": {"max_runtime_seconds": HUGE}},
            ("train", "max_runtime_seconds"),
        ),
    ],
)
def test_huge_and_non_finite_numbers_are_refused_naming_the_field(
    model: type[BaseModel], body: dict[str, Any], loc: tuple[Any, ...]
) -> None:
    with pytest.raises(ValidationError) as raised:
        model.model_validate(body)
    assert all(found[: len(loc)] == loc for found in _locs(raised.value)), raised.value.errors()


@pytest.mark.parametrize(
    ("model", "body", "loc"),
    [
        (TrainRequest, {"model_name": SURROGATE}, ("model_name",)),
        (
            TrainRequest,
            {"dataset": {"kind": "torchvision", "name": "MNIST", "root": "/d" + SURROGATE}},
            ("dataset", "root"),
        ),
        (
            TrainRequest,
            {"dataset": {"kind": "image_folder", "url": "s3://b/" + SURROGATE}},
            ("dataset", "url"),
        ),
        (SampleRequest, {"model": "digits-cvae" + SURROGATE, "per_class": 1}, ("model",)),
        (SampleRequest, {"model": "m", "per_class": {SURROGATE: 1}}, ("per_class", "\\ud800")),
        (
            SampleRequest,
            {"model": "m", "total": 3, "distribution": {"\udfff": 1.0}},
            ("distribution", "\\udfff"),
        ),
        (AliasRequest, {"version": 1, "reason": "because" + SURROGATE}, ("reason",)),
        (ScheduleRequest, {**SCHEDULE, "cron": "0 3 * * *" + SURROGATE}, ("cron",)),
        (ScheduleRequest, {**SCHEDULE, "timezone": SURROGATE}, ("timezone",)),
        (ScheduleRequest, {**SCHEDULE, "train": {"model_name": SURROGATE}}, ("train", "model_name")),
        (SchedulePatch, {"sample": {"per_class": {SURROGATE: 1}}}, ("sample", "per_class", "\\ud800")),
    ],
)
def test_a_lone_surrogate_is_refused_at_its_field(
    model: type[BaseModel], body: dict[str, Any], loc: tuple[Any, ...]
) -> None:
    with pytest.raises(ValidationError) as raised:
        model.model_validate(body)
    (error,) = raised.value.errors()
    assert (tuple(error["loc"]), error["type"]) == (loc, "lone_surrogate")


@pytest.mark.parametrize(
    ("model", "body", "loc"),
    [
        (AliasRequest, {"version": 1, "reason": "a\x00b"}, ("reason",)),
        (SampleRequest, {"model": "digits-cvae@champion\x00", "per_class": 1}, ("model",)),
        (SampleRequest, {"model": "m", "per_class": {"\x00": 1}}, ("per_class", "\x00")),
        (ScheduleRequest, {**SCHEDULE, "timezone": "UTC\x00"}, ("timezone",)),
    ],
)
def test_a_nul_character_is_refused_at_its_field(
    model: type[BaseModel], body: dict[str, Any], loc: tuple[Any, ...]
) -> None:
    with pytest.raises(ValidationError) as raised:
        model.model_validate(body)
    (error,) = raised.value.errors()
    assert (tuple(error["loc"]), error["type"]) == (loc, "nul_character")


def test_paired_surrogates_and_other_unicode_are_accepted() -> None:
    body = {"version": 1, "reason": "retrained \U0001f600 for Zoë, 日本"}
    decoded = json.loads(json.dumps(body))  # the emoji travels as the pair "\ud83d\ude00"
    assert AliasRequest.model_validate(decoded).reason == body["reason"]


# --- the API, on SQLite and PostgreSQL: each submit endpoint answers 422 and writes nothing ----------

TRAIN_PATH, SAMPLE_PATH, ALIAS_PATH = (
    "/v1/jobs/train",
    "/v1/jobs/sample",
    "/v1/models/digits-cvae/aliases/champion",
)
CASES = [
    pytest.param("POST", TRAIN_PATH, {"model_name": SURROGATE}, id="train-model-name-surrogate"),
    pytest.param("POST", TRAIN_PATH, {**TRAIN, "max_runtime_seconds": HUGE}, id="train-runtime-huge"),
    pytest.param(
        "POST",
        TRAIN_PATH,
        {**TRAIN, "dataset": {"kind": "torchvision", "name": "MNIST", "root": "/" + SURROGATE}},
        id="train-root-surrogate",
    ),
    pytest.param("POST", TRAIN_PATH, {SURROGATE: 1}, id="train-unknown-key-surrogate"),
    pytest.param(
        "POST", TRAIN_PATH, {"hyperparameters": {SURROGATE: 1}}, id="train-unknown-nested-key-surrogate"
    ),
    pytest.param("POST", SAMPLE_PATH, {"model": SURROGATE, "per_class": 1}, id="sample-model-surrogate"),
    pytest.param("POST", SAMPLE_PATH, {**SAMPLE, "per_class": HUGE}, id="sample-per-class-huge"),
    pytest.param("POST", SAMPLE_PATH, {"model": "digits-cvae:1", "total": HUGE}, id="sample-total-huge"),
    pytest.param("POST", SAMPLE_PATH, {**SAMPLE, "per_class": {SURROGATE: 1}}, id="sample-class-surrogate"),
    pytest.param(
        "POST", SAMPLE_PATH, {**SAMPLE, "model": "digits-cvae:" + "9" * 100}, id="sample-version-huge"
    ),
    pytest.param("PUT", ALIAS_PATH, {"version": HUGE}, id="alias-version-huge"),
    pytest.param("PUT", ALIAS_PATH, {"version": 1, "reason": SURROGATE}, id="alias-reason-surrogate"),
    pytest.param("PUT", ALIAS_PATH, {"version": 1, "reason": "\x00"}, id="alias-reason-nul"),
    pytest.param("POST", SAMPLE_PATH, {**SAMPLE, "model": "digits-cvae@a\x00"}, id="sample-alias-nul"),
    pytest.param("POST", "/v1/schedules", {**SCHEDULE, "cron": SURROGATE}, id="schedule-cron-surrogate"),
    pytest.param(
        "POST", "/v1/schedules", {**SCHEDULE, "train": {**TRAIN, "seed": HUGE}}, id="schedule-seed-huge"
    ),
    pytest.param("POST", "/v1/schedules", {**SCHEDULE, "sample": {"total": HUGE}}, id="schedule-total-huge"),
    pytest.param("PATCH", "/v1/schedules/{id}", {"timezone": SURROGATE}, id="patch-timezone-surrogate"),
    pytest.param("PATCH", "/v1/schedules/{id}", {"sample": {"per_class": HUGE}}, id="patch-per-class-huge"),
]


@pytest.fixture
def api_on(
    make_api: Callable[..., TestClient], database_url: str, add_model: Callable[..., str]
) -> TestClient:
    """The API on the parametrised database (SQLite, PostgreSQL), with digits-cvae v1 and one schedule."""
    api = make_api(database_url=database_url, raise_server_exceptions=False)
    add_model(api)
    assert api.post("/v1/schedules", json={**SCHEDULE, "name": "existing"}).status_code == 201
    return api


@pytest.mark.parametrize(("method", "path", "body"), CASES)
def test_surrogates_and_huge_numbers_get_a_422_and_write_nothing(
    api_on: TestClient, ledger_url: Callable[[TestClient], str], method: str, path: str, body: dict[str, Any]
) -> None:
    schedule_id = api_on.get("/v1/schedules").json()[0]["id"]
    headers = {"Content-Type": "application/json"}
    response = api_on.request(method, path.format(id=schedule_id), content=_raw(body), headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"][0] == "body"
    with session_scope(ledger_url(api_on)) as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 0
        assert session.scalar(select(func.count()).select_from(Schedule)) == 1


@pytest.mark.parametrize(
    "ref", ["digits-cvae:" + "1" * 400, "digits-cvae:2147483648", "digits-cvae:99999999999"]
)
def test_a_model_version_too_large_for_any_model_is_not_found(api_on: TestClient, ref: str) -> None:
    assert api_on.get(f"/v1/models/{ref}").status_code == 404


def test_max_runtime_above_the_deployment_limit_names_the_limit(make_api: Callable[..., TestClient]) -> None:
    api = make_api(max_runtime_seconds=600)
    response = api.post("/v1/jobs/train", json={**TRAIN, "max_runtime_seconds": 601})
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "max_runtime_seconds"] and "limit of 600" in error["msg"]
    accepted = api.post("/v1/jobs/train", json={**TRAIN, "max_runtime_seconds": 600})
    assert accepted.status_code == 202 and accepted.json()["params"]["max_runtime_seconds"] == 600


# --- URLs: a NUL (`%00`) in a path or query parameter, or a cursor past the calendar ---------------------


def _cursor(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "url",
    [
        "/v1/jobs/%00",
        "/v1/jobs/%00/events",
        "/v1/jobs/%00/artifacts",
        "/v1/models/digits-cvae%00:1",
        "/v1/models/digits-cvae@champion%00",
        "/v1/schedules/%00",
        "/v1/schedules/%00/runs",
        "/v1/datasets/%00",
        "/v1/models?name=digits-cvae%00",
        f"/v1/jobs?cursor={_cursor('2026-01-01T00:00:00+00:00|' + chr(0))}",
        f"/v1/jobs?cursor={_cursor('0001-01-01T00:00:00+14:00|x')}",
        f"/v1/jobs?cursor={_cursor('9999-12-31T23:59:59-14:00|x')}",
    ],
)
def test_a_nul_or_an_impossible_time_in_the_url_is_a_422(api_on: TestClient, url: str) -> None:
    response = api_on.get(url)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"][0] in ("path", "query")
