"""Dataset locations at submit: the tenant's own data sources only, never the service's storage (else 422)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from synthjobs.ledger.db import session_scope
from synthjobs.ledger.tokens import create_token

CREDENTIALS = {"access_key_id_env": "ACME_S3_KEY", "secret_access_key_env": "ACME_S3_SECRET"}


def _folder(url: str) -> dict[str, Any]:
    return {"dataset": {"kind": "image_folder", "url": url}, "hyperparameters": {"epochs": 1}}


def _torchvision(root: str, download: bool = False) -> dict[str, Any]:
    dataset = {"kind": "torchvision", "name": "MNIST", "root": root, "download": download}
    return {"dataset": dataset, "hyperparameters": {"epochs": 1}}


def _refused(response: Any, field: str) -> str:
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "dataset", field], error
    return str(error["msg"])


@pytest.fixture
def data(tmp_path: Path) -> Path:
    for tenant in ("acme", "globex"):
        (tmp_path / "data" / tenant / "shapes").mkdir(parents=True)
    return tmp_path / "data"


@pytest.fixture
def api(make_api: Callable[..., TestClient], data: Path) -> TestClient:
    return make_api(
        storage_url="s3://service-bucket/service",
        data_sources={
            "acme": [
                {"url": "s3://shared/acme", **CREDENTIALS},
                (data / "acme").as_uri(),
                "s3://nocreds/acme",
            ],
            "globex": [(data / "globex").as_uri()],
        },
    )


@pytest.fixture
def acme(api: TestClient, ledger_url: Callable[[TestClient], str]) -> dict[str, str]:
    with session_scope(ledger_url(api)) as session:
        return {"Authorization": f"Bearer {create_token(session, 'acme')}"}


def test_s3_folders_inside_the_tenants_sources_are_accepted(api: TestClient, acme: dict[str, str]) -> None:
    assert api.post("/v1/jobs/train", json=_folder("s3://shared/acme/cats"), headers=acme).status_code == 202


@pytest.mark.parametrize(
    "url",
    ["s3://shared/acme2/cats", "s3://shared/globex", "s3://any-bucket/anything"],
)
def test_s3_folders_outside_the_tenants_sources_are_refused(
    api: TestClient, acme: dict[str, str], url: str
) -> None:
    _refused(api.post("/v1/jobs/train", json=_folder(url), headers=acme), "url")


@pytest.mark.parametrize(
    "url", ["s3://service-bucket/service", "s3://service-bucket/service/models", "s3://service-bucket"]
)
def test_the_service_bucket_is_never_a_dataset(
    make_api: Callable[..., TestClient], url: str, ledger_url: Callable[[TestClient], str]
) -> None:
    api = make_api(
        storage_url="s3://service-bucket/service",
        data_sources={"acme": [{"url": "s3://service-bucket", **CREDENTIALS}]},
    )
    with session_scope(ledger_url(api)) as session:
        acme = {"Authorization": f"Bearer {create_token(session, 'acme')}"}
    message = _refused(api.post("/v1/jobs/train", json=_folder(url), headers=acme), "url")
    assert "service's own output storage" in message


def test_an_s3_source_without_credentials_is_refused_unless_the_deployment_opts_in(
    make_api: Callable[..., TestClient], ledger_url: Callable[[TestClient], str]
) -> None:
    for opted_in, expected in ((False, 422), (True, 202)):
        api = make_api(
            data_sources={"acme": ["s3://nocreds/acme"]}, data_sources_instance_credentials=opted_in
        )
        with session_scope(ledger_url(api)) as session:
            acme = {"Authorization": f"Bearer {create_token(session, 'acme')}"}
        response = api.post("/v1/jobs/train", json=_folder("s3://nocreds/acme/x"), headers=acme)
        assert response.status_code == expected, response.text
        if expected == 422:
            assert "no credentials" in _refused(response, "url")


def test_another_tenants_root_is_refused_for_folders_and_torchvision(
    api: TestClient, acme: dict[str, str], data: Path
) -> None:
    assert (
        api.post(
            "/v1/jobs/train", json=_folder((data / "acme" / "shapes").as_uri()), headers=acme
        ).status_code
        == 202
    )
    _refused(
        api.post("/v1/jobs/train", json=_folder((data / "globex" / "shapes").as_uri()), headers=acme), "url"
    )
    _refused(api.post("/v1/jobs/train", json=_torchvision(str(data / "globex")), headers=acme), "root")
    assert api.post("/v1/jobs/train", json=_torchvision(str(data / "acme")), headers=acme).status_code == 202


def test_a_symlink_into_another_tenants_root_is_refused(
    api: TestClient, acme: dict[str, str], data: Path
) -> None:
    (data / "acme" / "borrowed").symlink_to(data / "globex" / "shapes")
    _refused(
        api.post("/v1/jobs/train", json=_folder((data / "acme" / "borrowed").as_uri()), headers=acme), "url"
    )
    _refused(
        api.post("/v1/jobs/train", json=_torchvision(str(data / "acme" / "borrowed")), headers=acme), "root"
    )


def test_the_admin_default_tenant_keeps_the_legacy_data_roots_only(
    make_api: Callable[..., TestClient], data: Path, ledger_url: Callable[[TestClient], str]
) -> None:
    api = make_api(data_roots=[data / "acme"])
    assert api.post("/v1/jobs/train", json=_folder((data / "acme" / "shapes").as_uri())).status_code == 202
    with session_scope(ledger_url(api)) as session:
        globex = {"Authorization": f"Bearer {create_token(session, 'globex')}"}
    response = api.post("/v1/jobs/train", json=_folder((data / "acme" / "shapes").as_uri()), headers=globex)
    assert "no data sources" in _refused(response, "url")


def test_torchvision_download_is_refused_unless_the_deployment_allows_it(
    make_api: Callable[..., TestClient], data: Path
) -> None:
    refusing = make_api(data_roots=[data])
    message = _refused(
        refusing.post("/v1/jobs/train", json=_torchvision(str(data), download=True)), "download"
    )
    assert "does not download" in message
    assert refusing.post("/v1/jobs/train", json=_torchvision(str(data))).status_code == 202
    allowing = make_api(data_roots=[data], allow_dataset_downloads=True)
    assert allowing.post("/v1/jobs/train", json=_torchvision(str(data), download=True)).status_code == 202
