"""Tokens and tenants: every endpoint but /healthz and /metrics needs a token; a tenant sees only its own."""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from synthjobs.ledger import jobs, webhooks
from synthjobs.ledger.db import session_scope
from synthjobs.ledger.registry import register_model
from synthjobs.ledger.tables import JobState
from synthjobs.ledger.tokens import create_token

TRAIN = {"dataset": "digits", "hyperparameters": {"epochs": 1}}
DIGITS = {"class_names": [str(i) for i in range(10)], "image_shape": [1, 8, 8]}


@pytest.fixture
def api(make_api: Callable[..., TestClient]) -> TestClient:
    return make_api(token_cache_seconds=0)  # a revoked token must be refused at once in these tests


@pytest.fixture
def tokens(api: TestClient, ledger_url: Callable[[TestClient], str]) -> dict[str, str]:
    with session_scope(ledger_url(api)) as session:
        return {tenant: create_token(session, tenant) for tenant in ("acme", "globex")}


def as_tenant(api: TestClient, token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _npz() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, images=np.zeros((6, 8, 8), np.uint8), labels=np.array([0, 0, 1, 1, 2, 2]))
    return buffer.getvalue()


# --- the cross-tenant probe -----------------------------------------------------------------------------
#
# Tenant globex tries every route of the API on tenant acme's objects (both non-default tenants): ids,
# `name:version`, `name@alias`, alias history and rollback, schedules' dataset references, artifacts,
# idempotency keys. Paths and bodies are templates filled with acme's ids from `_acme_resources`.
# `test_every_api_route_has_a_cross_tenant_probe` fails, naming the route, for any route of the app that
# neither PROBES nor PROBED_ELSEWHERE covers: a new route needs its probe before it ships.

ACME_JOB_KEY, ACME_UPLOAD_KEY = "acme-nightly-job", "acme-nightly-upload"
ACME_DATASET = {"kind": "uploaded", "id": "{dataset}"}
CRON = {"cron": "0 3 * * *", "model_name": "acme-cvae"}


@dataclass(frozen=True)
class Probe:
    """One request of tenant globex, and the status that shows it reached nothing of acme's.

    A 2xx answer must not mention any of acme's ids either (lists, and creations that replay by key).
    """

    method: str
    path: str
    json: Any = None
    status: int = 404
    upload: bool = False
    idempotency_key: str | None = None


PROBES: list[Probe] = [
    # jobs
    Probe("GET", "/v1/jobs/{job}"),
    Probe("GET", "/v1/jobs/{job}/events"),
    Probe("POST", "/v1/jobs/{job}/cancel"),
    Probe("POST", "/v1/jobs/{done_job}/cancel"),  # 404, not acme's 409: not even that it finished
    Probe("DELETE", "/v1/jobs/{job}"),
    Probe("DELETE", "/v1/jobs/{done_job}"),
    Probe("GET", "/v1/jobs", status=200),
    Probe("GET", "/v1/jobs?state=SUCCEEDED", status=200),
    Probe("POST", "/v1/jobs/train", {"dataset": ACME_DATASET}, status=422),
    Probe("POST", "/v1/jobs/train", TRAIN, status=202, idempotency_key=ACME_JOB_KEY),
    Probe("POST", "/v1/jobs/sample", {"model": "{model}", "per_class": 1}, status=422),
    Probe("POST", "/v1/jobs/sample", {"model": "acme-cvae:1", "per_class": 1}, status=422),
    Probe("POST", "/v1/jobs/sample", {"model": "acme-cvae@champion", "per_class": 1}, status=422),
    # artifacts (with globex's own bearer token; signed links are per job and name)
    Probe("GET", "/v1/jobs/{done_job}/artifacts"),
    Probe("GET", "/v1/jobs/{done_job}/artifacts/manifest.json"),
    # models, aliases, alias history and rollback
    Probe("GET", "/v1/models", status=200),
    Probe("GET", "/v1/models?name=acme-cvae", status=200),
    Probe("GET", "/v1/models/{model}"),
    Probe("GET", "/v1/models/acme-cvae:1"),
    Probe("GET", "/v1/models/acme-cvae@champion"),
    Probe("PUT", "/v1/models/acme-cvae/aliases/champion", {"model_id": "{model}"}),
    Probe("PUT", "/v1/models/acme-cvae/aliases/champion", {"version": 1}),
    Probe("PUT", "/v1/models/acme-cvae/aliases/staging", {"version": 1}),
    Probe("DELETE", "/v1/models/acme-cvae/aliases/champion"),
    Probe("POST", "/v1/models/acme-cvae/aliases/champion/rollback"),
    Probe("GET", "/v1/models/acme-cvae/aliases/champion/history"),
    # datasets
    Probe("GET", "/v1/datasets", status=200),
    Probe("GET", "/v1/datasets/{dataset}"),
    Probe("POST", "/v1/datasets", upload=True, status=201, idempotency_key=ACME_UPLOAD_KEY),
    # schedules, and the data their training specs name
    Probe("GET", "/v1/schedules", status=200),
    Probe("GET", "/v1/schedules/{schedule}"),
    Probe("PATCH", "/v1/schedules/{schedule}", {"paused": True}),
    Probe("DELETE", "/v1/schedules/{schedule}"),
    Probe("GET", "/v1/schedules/{schedule}/runs"),
    Probe("POST", "/v1/schedules", {"name": "copy", **CRON, "train": {"dataset": ACME_DATASET}}, status=422),
    Probe("PATCH", "/v1/schedules/{own_schedule}", {"train": {"dataset": ACME_DATASET}}, status=422),
    # webhooks and their deliveries (acme's has one, for its finished job)
    Probe("GET", "/v1/webhooks", status=200),
    Probe("GET", "/v1/webhooks/{webhook}"),
    Probe("GET", "/v1/webhooks/{webhook}/deliveries"),
    Probe("DELETE", "/v1/webhooks/{webhook}"),
    Probe("POST", "/v1/webhooks", {"url": "https://10.0.0.1/x", "event_types": ["job.failed"]}, status=422),
]

# Routes that hold no tenant's data.
NO_TENANT_DATA: set[tuple[str, str]] = {("GET", "/healthz"), ("GET", "/metrics")}
# Routes whose cross-tenant probe needs more than one request of PROBES, as (method, route path) → the name
# of the test function in this module that probes it.
PROBED_ELSEWHERE: dict[tuple[str, str], str] = {}


def _fill(value: Any, ids: dict[str, str]) -> Any:
    """A probe's path or body with `{job}`, `{model}`, … replaced by those ids."""
    if isinstance(value, str):
        return value.format(**ids)
    if isinstance(value, dict):
        return {key: _fill(item, ids) for key, item in value.items()}
    return value


def _acme_resources(
    api: TestClient, ledger_url: Callable[[TestClient], str], acme: dict[str, str], globex: dict[str, str]
) -> dict[str, str]:
    """acme's objects: a queued job, a finished one with an artifact, acme-cvae v1 and v2 with champion
    moved v1 → v2, an uploaded dataset and a schedule training on it; and globex's own schedule."""
    job = api.post("/v1/jobs/train", json=TRAIN, headers={**acme, "Idempotency-Key": ACME_JOB_KEY}).json()
    done = api.post("/v1/jobs/train", json=TRAIN, headers=acme).json()
    manifest = api.app.state.storage.put_bytes(f"jobs/{done['id']}/manifest.json", b"{}")  # type: ignore[attr-defined]
    with session_scope(ledger_url(api)) as session:
        hook = webhooks.create_webhook(
            session, "acme", "https://hooks.example.com/acme", ["job.succeeded"]
        ).id
        assert jobs.claim_job(session, done["id"], "probe-worker", 60)
        jobs.finish_job(session, done["id"], JobState.SUCCEEDED, result={"manifest_uri": manifest})
        models = [_register(session, "acme", "acme-cvae") for _ in range(2)]
    for version in (1, 2):
        api.put(
            "/v1/models/acme-cvae/aliases/champion", json={"version": version}, headers=acme
        ).raise_for_status()
    upload = {**acme, "Idempotency-Key": ACME_UPLOAD_KEY}
    dataset = api.post("/v1/datasets", files={"file": ("d.npz", _npz())}, headers=upload).json()
    train = {"dataset": {"kind": "uploaded", "id": dataset["id"]}}
    schedule = api.post(
        "/v1/schedules", headers=acme, json={"name": "nightly", **CRON, "train": train}
    ).json()
    own = api.post(
        "/v1/schedules",
        headers=globex,
        json={"name": "nightly", **CRON, "model_name": "globex-cvae", "train": TRAIN},
    ).json()
    return {
        "job": job["id"],
        "done_job": done["id"],
        "model": models[0],
        "model_v2": models[1],
        "dataset": dataset["id"],
        "schedule": schedule["id"],
        "own_schedule": own["id"],
        "webhook": hook,
    }


def _register(session: Any, tenant: str, name: str) -> str:
    model = register_model(
        session,
        model_id=str(uuid.uuid4()),
        name=name,
        training_job_id=None,
        checkpoint_uri="file:///nowhere/model.pt",
        hyperparameters={},
        metrics={},
        dataset=DIGITS,
        tenant=tenant,
    )
    return model.id


def _send(api: TestClient, probe: Probe, ids: dict[str, str], headers: dict[str, str]) -> Any:
    if probe.idempotency_key:
        headers = {**headers, "Idempotency-Key": probe.idempotency_key}
    files = {"file": ("d.npz", _npz())} if probe.upload else None
    return api.request(
        probe.method, _fill(probe.path, ids), json=_fill(probe.json, ids), files=files, headers=headers
    )


def test_another_tenants_objects_are_out_of_reach_on_every_route(
    api: TestClient, tokens: dict[str, str], ledger_url: Callable[[TestClient], str]
) -> None:
    acme, globex = as_tenant(api, tokens["acme"]), as_tenant(api, tokens["globex"])
    ids = _acme_resources(api, ledger_url, acme, globex)
    for probe in PROBES:
        if probe.method == "GET" and probe.status == 404:  # the probe is worth something: acme reaches it
            owner = _send(api, probe, ids, acme)
            assert owner.status_code == 200, f"acme's own {probe.path}: {owner.status_code} {owner.text}"
    assert api.get(f"/v1/jobs/{ids['done_job']}/artifacts", headers=acme).json(), "acme sees its artifact"
    leaks = [ids[name] for name in ("job", "done_job", "model", "model_v2", "dataset", "schedule")]
    for probe in PROBES:
        response = _send(api, probe, ids, globex)
        where = f"globex's {probe.method} {_fill(probe.path, ids)}"
        assert response.status_code == probe.status, (
            f"{where} answered {response.status_code}: {response.text}"
        )
        if response.is_success:
            assert not [i for i in leaks if i in response.text], f"{where} showed acme's ids: {response.text}"
    assert api.get(f"/v1/jobs/{ids['job']}", headers=acme).json()["state"] == "QUEUED", "nothing was touched"
    champion = api.get("/v1/models/acme-cvae@champion", headers=acme).json()
    assert champion["id"] == ids["model_v2"] and champion["aliases"] == ["champion"]
    assert len(api.get("/v1/models/acme-cvae/aliases/champion/history", headers=acme).json()) == 2
    assert api.get(f"/v1/schedules/{ids['schedule']}", headers=acme).json()["paused"] is False
    assert api.get(f"/v1/datasets/{ids['dataset']}", headers=acme).status_code == 200


HTTP_METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}


def _operations(app: Any) -> list[tuple[str, str]]:
    """Every (method, path) of the app, from its OpenAPI document (the paths as it publishes them).

    The document rather than `app.routes`: since FastAPI 0.16x, `app.routes` holds one private
    `_IncludedRouter` per `include_router`, not the routes. A route hidden with `include_in_schema=False`
    is therefore not seen here; the API has none.
    """
    paths = app.openapi()["paths"]
    return [
        (method.upper(), path) for path, item in paths.items() for method in item if method in HTTP_METHODS
    ]


def _operation_of(operations: list[tuple[str, str]], method: str, path: str) -> tuple[str, str] | None:
    """The operation a request's method and path fall on (`{param}` stands for one path segment)."""
    segments = path.split("?")[0].strip("/").split("/")
    for op_method, template in operations:
        parts = template.strip("/").split("/")
        if op_method == method and len(parts) == len(segments):
            if all(
                p == s or (p.startswith("{") and p.endswith("}"))
                for p, s in zip(parts, segments, strict=True)
            ):
                return op_method, template
    return None


def test_every_api_route_has_a_cross_tenant_probe(api: TestClient) -> None:
    operations = _operations(api.app)
    assert len(operations) >= 25, f"only {len(operations)} operations found: is the enumeration broken?"
    dummy = {
        name: str(uuid.uuid4())
        for name in ("job", "done_job", "model", "dataset", "schedule", "own_schedule", "webhook")
    }
    probed: set[tuple[str, str]] = set()
    for probe in PROBES:
        operation = _operation_of(operations, probe.method, _fill(probe.path, dummy))
        assert operation is not None, f"the probe {probe.method} {probe.path} matches no route of the app"
        probed.add(operation)
    for operation, test_name in PROBED_ELSEWHERE.items():
        assert operation in operations, f"PROBED_ELSEWHERE names {operation}, which the app does not have"
        assert callable(globals().get(test_name)), (
            f"PROBED_ELSEWHERE names {test_name}, no test of this module"
        )
    unprobed = [op for op in operations if op not in probed | PROBED_ELSEWHERE.keys() | NO_TENANT_DATA]
    assert not unprobed, (
        "routes with no cross-tenant probe (add a Probe to PROBES, or name its test in PROBED_ELSEWHERE):\n"
        + "\n".join(f"  {method} {path}" for method, path in unprobed)
    )


def test_alias_history_and_rollback_stay_within_each_tenant(
    api: TestClient, tokens: dict[str, str], ledger_url: Callable[[TestClient], str]
) -> None:
    headers = {tenant: as_tenant(api, tokens[tenant]) for tenant in ("acme", "globex")}
    alias = "/v1/models/shared-cvae/aliases/champion"
    with session_scope(ledger_url(api)) as session:
        ids = {tenant: [_register(session, tenant, "shared-cvae") for _ in range(2)] for tenant in headers}
    for tenant, auth in headers.items():
        for version in (1, 2):
            body = {"version": version, "reason": f"{tenant} v{version}"}
            api.put(alias, json=body, headers=auth).raise_for_status()
    for tenant, auth in headers.items():
        history = api.get(f"{alias}/history", headers=auth).json()
        assert [(e["from_model_id"], e["to_model_id"], e["reason"]) for e in history] == [
            (ids[tenant][0], ids[tenant][1], f"{tenant} v2"),
            (None, ids[tenant][0], f"{tenant} v1"),
        ], f"{tenant}'s history"
    rolled = api.post(f"{alias}/rollback", headers=headers["acme"])
    assert rolled.status_code == 200 and rolled.json()["model_id"] == ids["acme"][0], rolled.text
    globex_champion = api.get("/v1/models/shared-cvae@champion", headers=headers["globex"]).json()
    assert globex_champion["id"] == ids["globex"][1], "acme's rollback left globex's alias where it was"
    assert len(api.get(f"{alias}/history", headers=headers["globex"]).json()) == 2
    assert len(api.get(f"{alias}/history", headers=headers["acme"]).json()) == 3
    # The admin token acts as the tenant `default`, which never had this alias: nothing to read or undo.
    assert api.get(f"{alias}/history").status_code == 404
    assert api.post(f"{alias}/rollback").status_code == 404
    rolled = api.post(f"{alias}/rollback", headers=headers["globex"])
    assert rolled.status_code == 200 and rolled.json()["model_id"] == ids["globex"][0], rolled.text
    acme_champion = api.get("/v1/models/shared-cvae@champion", headers=headers["acme"]).json()
    assert acme_champion["id"] == ids["acme"][0]


def test_tenants_number_their_model_versions_apart(
    api: TestClient, tokens: dict[str, str], ledger_url: Callable[[TestClient], str]
) -> None:
    with session_scope(ledger_url(api)) as session:
        for tenant in ("acme", "globex", "acme"):
            register_model(
                session,
                model_id=str(uuid.uuid4()),
                name="shared-name",
                training_job_id=None,
                checkpoint_uri="file:///m.pt",
                hyperparameters={},
                metrics={},
                dataset=DIGITS,
                tenant=tenant,
            )
    versions = [
        m["version"] for m in api.get("/v1/models", headers=as_tenant(api, tokens["acme"])).json()["items"]
    ]
    assert sorted(versions) == [1, 2]
    assert [
        m["version"] for m in api.get("/v1/models", headers=as_tenant(api, tokens["globex"])).json()["items"]
    ] == [1]


def test_server_owned_fields_are_rejected(api: TestClient) -> None:
    for field, value in (("state", "SUCCEEDED"), ("tenant", "globex"), ("attempts", 0), ("id", "x")):
        response = api.post("/v1/jobs/train", json={**TRAIN, field: value})
        assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["body", field]


def test_same_idempotency_key_returns_the_original_and_a_different_body_conflicts(api: TestClient) -> None:
    key = {"Idempotency-Key": "nightly-2026-11-27"}
    first = api.post("/v1/jobs/train", json=TRAIN, headers=key)
    again = api.post("/v1/jobs/train", json=TRAIN, headers=key)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["id"] == first.json()["id"]
    conflict = api.post("/v1/jobs/train", json={**TRAIN, "seed": 9}, headers=key)
    assert conflict.status_code == 409
    assert len(api.get("/v1/jobs").json()["items"]) == 1


def test_submit_rate_and_concurrency_limits_answer_429_with_retry_after(
    make_api: Callable[..., TestClient],
) -> None:
    api = make_api(max_submits_per_minute=2)
    assert [api.post("/v1/jobs/train", json=TRAIN).status_code for _ in range(2)] == [202, 202]
    limited = api.post("/v1/jobs/train", json=TRAIN)
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0
    api = make_api(max_concurrent_jobs=1)
    assert api.post("/v1/jobs/train", json=TRAIN).status_code == 202
    limited = api.post("/v1/jobs/train", json=TRAIN)
    assert limited.status_code == 429 and "queued or running" in limited.json()["detail"]


def test_another_tenants_dataset_urls_and_roots_are_refused_with_422(
    make_api: Callable[..., TestClient], ledger_url: Callable[[TestClient], str], tmp_path: Path
) -> None:
    for tenant in ("acme", "globex"):
        (tmp_path / tenant / "shapes").mkdir(parents=True)
    keys = {"access_key_id_env": "K", "secret_access_key_env": "S"}
    api = make_api(
        storage_url="s3://service/out",
        data_sources={
            tenant: [(tmp_path / tenant).as_uri(), {"url": f"s3://shared/{tenant}", **keys}]
            for tenant in ("acme", "globex")
        },
    )
    with session_scope(ledger_url(api)) as session:
        globex = as_tenant(api, create_token(session, "globex"))
    acme_data = [
        ("url", {"kind": "image_folder", "url": (tmp_path / "acme" / "shapes").as_uri()}),
        ("url", {"kind": "image_folder", "url": "s3://shared/acme"}),
        ("url", {"kind": "image_folder", "url": "s3://service/out/models"}),
        ("url", {"kind": "image_folder", "url": "s3://service/out/jobs"}),
        ("root", {"kind": "torchvision", "name": "MNIST", "root": str(tmp_path / "acme")}),
    ]
    for field, dataset in acme_data:
        response = api.post("/v1/jobs/train", json={"dataset": dataset}, headers=globex)
        assert response.status_code == 422, f"{dataset}: {response.status_code} {response.text}"
        assert response.json()["detail"][0]["loc"] == ["body", "dataset", field]
    own = {"kind": "image_folder", "url": "s3://shared/globex/cats"}
    assert api.post("/v1/jobs/train", json={"dataset": own}, headers=globex).status_code == 202


def test_another_tenants_delete_of_a_job_is_404_and_deletes_nothing(
    api: TestClient, tokens: dict[str, str]
) -> None:
    acme, globex = as_tenant(api, tokens["acme"]), as_tenant(api, tokens["globex"])
    job_id = api.post("/v1/jobs/train", json=TRAIN, headers=acme).json()["id"]
    response = api.delete(f"/v1/jobs/{job_id}", headers=globex)
    assert response.status_code == 404, response.text
    job = api.get(f"/v1/jobs/{job_id}", headers=acme).json()
    assert (job["state"], job["delete_requested_at"], job["deleted_at"]) == ("QUEUED", None, None)
    assert api.delete(f"/v1/jobs/{job_id}", headers=acme).status_code == 200


# --- the same probe on the dashboard at /ui (issue 14) ---------------------------------------------------
#
# globex logs in to the dashboard and tries every /ui route on acme's objects, with its own valid CSRF
# token on the forms; `test_every_ui_route_has_a_cross_tenant_probe` fails for a /ui route no probe covers.

UI_PROBES: list[Probe] = [
    Probe("GET", "/ui/jobs/{job}"),
    Probe("GET", "/ui/jobs/{done_job}"),
    Probe("GET", "/ui/jobs/{job}/live"),
    Probe("POST", "/ui/jobs/{job}/cancel"),
    Probe("GET", "/ui/jobs", status=200),
    Probe("GET", "/ui/jobs?model=acme-cvae", status=200),
    Probe("GET", "/ui/jobs?schedule={schedule}"),
    Probe("GET", "/ui/models", status=200),
    Probe("GET", "/ui/models/acme-cvae"),
    Probe("POST", "/ui/models/acme-cvae/aliases/champion/rollback"),
    Probe("GET", "/ui/schedules", status=200),
    Probe("POST", "/ui/schedules/{schedule}/pause"),
    Probe("POST", "/ui/schedules/{schedule}/resume"),
]
# The login form, logging out and the front page's redirect hold no tenant's data.
UI_NO_TENANT_DATA = {("GET", "/ui"), ("GET", "/ui/login"), ("POST", "/ui/login"), ("POST", "/ui/logout")}


def ui_login(api: TestClient, token: str) -> tuple[TestClient, str]:
    """A browser-like client of `api`'s app logged in with `token`, and its session's CSRF token."""
    browser = TestClient(api.app)
    form = browser.get("/ui/login").text
    login_csrf = form.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    answer = browser.post("/ui/login", data={"token": token, "csrf": login_csrf}, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    page = browser.get("/ui/jobs").text
    return browser, page.split('name="csrf" value="', 1)[1].split('"', 1)[0]


def _send_ui(browser: TestClient, probe: Probe, ids: dict[str, str], csrf: str) -> Any:
    data = {"csrf": csrf} if probe.method == "POST" else None
    return browser.request(probe.method, _fill(probe.path, ids), data=data, follow_redirects=False)


def test_another_tenants_objects_are_out_of_reach_on_every_ui_route(
    api: TestClient, tokens: dict[str, str], ledger_url: Callable[[TestClient], str]
) -> None:
    acme, globex = as_tenant(api, tokens["acme"]), as_tenant(api, tokens["globex"])
    ids = _acme_resources(api, ledger_url, acme, globex)
    acme_ui, acme_csrf = ui_login(api, tokens["acme"])
    globex_ui, globex_csrf = ui_login(api, tokens["globex"])
    for probe in UI_PROBES:
        if probe.method == "GET" and probe.status == 404:  # the probe is worth something: acme reaches it
            owner = _send_ui(acme_ui, probe, ids, acme_csrf)
            assert owner.status_code == 200, f"acme's own {probe.path}: {owner.status_code} {owner.text}"
    assert ids["job"] in acme_ui.get("/ui/jobs").text and "acme-cvae" in acme_ui.get("/ui/models").text
    leaks = [ids[name] for name in ("job", "done_job", "model", "model_v2", "dataset", "schedule")]
    for probe in UI_PROBES:
        response = _send_ui(globex_ui, probe, ids, globex_csrf)
        where = f"globex's {probe.method} {_fill(probe.path, ids)}"
        assert response.status_code == probe.status, (
            f"{where} answered {response.status_code}: {response.text}"
        )
        if response.is_success:
            text = response.text
            assert not [i for i in leaks if i in text or i[:8] in text], f"{where} showed acme's ids"
            assert "acme-cvae" not in text.replace('value="acme-cvae"', ""), f"{where} showed acme's model"
    assert api.get(f"/v1/jobs/{ids['job']}", headers=acme).json()["state"] == "QUEUED", "nothing was touched"
    champion = api.get("/v1/models/acme-cvae@champion", headers=acme).json()
    assert champion["id"] == ids["model_v2"], "globex's rollback left acme's alias where it was"
    assert api.get(f"/v1/schedules/{ids['schedule']}", headers=acme).json()["paused"] is False


def test_every_ui_route_has_a_cross_tenant_probe(api: TestClient) -> None:
    from api.ui.routes import router

    operations = [
        (method, route.path)  # type: ignore[attr-defined]
        for route in router.routes
        for method in route.methods  # type: ignore[attr-defined]
    ]
    assert len(operations) >= 14, f"only {len(operations)} /ui operations found: is the enumeration broken?"
    dummy = {name: str(uuid.uuid4()) for name in ("job", "done_job", "schedule")}
    probed = set()
    for probe in UI_PROBES:
        operation = _operation_of(operations, probe.method, _fill(probe.path, dummy))
        assert operation is not None, f"the probe {probe.method} {probe.path} matches no /ui route"
        probed.add(operation)
    unprobed = [op for op in operations if op not in probed | UI_NO_TENANT_DATA]
    assert not unprobed, "/ui routes with no cross-tenant probe (add one to UI_PROBES):\n" + "\n".join(
        f"  {method} {path}" for method, path in unprobed
    )
