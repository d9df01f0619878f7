"""The worker checks a job's dataset again, as its own tenant's: sources, symlinks, credentials, downloads."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from synthjobs.errors import JobFailure
from synthjobs.settings import Settings
from synthjobs.storage import open_storage
from training.data import DatasetError
from worker.pipelines.datasets import _source_storage, load_training_data, source_of


def _png(seed: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    pixels = (np.random.default_rng(seed).random((16, 16)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _folder(root: Path, classes: tuple[str, ...] = ("circle", "square")) -> Path:
    for c, class_name in enumerate(classes):
        (root / class_name).mkdir(parents=True, exist_ok=True)
        for index in range(4):
            (root / class_name / f"img-{index}.png").write_bytes(_png(10 * c + index))
    return root


@pytest.fixture
def data(tmp_path: Path) -> Path:
    _folder(tmp_path / "data" / "acme" / "shapes")
    _folder(tmp_path / "data" / "globex" / "shapes", ("square", "triangle"))
    return tmp_path / "data"


def _settings(tmp_path: Path, data: Path, **overrides: Any) -> Settings:
    sources = {tenant: [(data / tenant).as_uri()] for tenant in ("acme", "globex")}
    return Settings(home=tmp_path / "home", data_sources=sources, **overrides)


def _load(spec: dict[str, Any], settings: Settings, tenant: str = "acme") -> Any:
    return load_training_data(spec, settings, open_storage(settings), tenant=tenant)


def _image_folder(path: Path) -> dict[str, Any]:
    return {"kind": "image_folder", "url": path.as_uri()}


def test_a_folder_of_the_jobs_own_tenant_loads(tmp_path: Path, data: Path) -> None:
    loaded = _load(_image_folder(data / "acme" / "shapes"), _settings(tmp_path, data))
    assert list(loaded.class_names) == ["circle", "square"]


def test_a_spec_naming_another_tenants_folder_fails_the_job(tmp_path: Path, data: Path) -> None:
    settings = _settings(tmp_path, data)
    with pytest.raises(JobFailure, match="not under one of this tenant's data sources"):
        _load(_image_folder(data / "globex" / "shapes"), settings)
    with pytest.raises(JobFailure, match="not under one of this tenant's data sources"):
        _load({"kind": "torchvision", "name": "MNIST", "root": str(data / "globex")}, settings)


def test_a_class_folder_linking_into_another_tenants_root_fails_the_job(tmp_path: Path, data: Path) -> None:
    (data / "acme" / "shapes" / "triangle").symlink_to(data / "globex" / "shapes" / "triangle")
    with pytest.raises(DatasetError, match="triangle is a link that leads outside its data source"):
        _load(_image_folder(data / "acme" / "shapes"), _settings(tmp_path, data))


def test_an_image_linking_out_of_the_source_fails_the_job(tmp_path: Path, data: Path) -> None:
    (tmp_path / "secret.png").write_bytes(_png(99))
    (data / "acme" / "shapes" / "square" / "stolen.png").symlink_to(tmp_path / "secret.png")
    with pytest.raises(DatasetError, match="stolen.png is a link that leads outside"):
        _load(_image_folder(data / "acme" / "shapes"), _settings(tmp_path, data))


def test_links_that_stay_inside_the_source_are_followed(tmp_path: Path, data: Path) -> None:
    _folder(data / "acme" / "elsewhere" / "triangle", ("a",))
    (data / "acme" / "shapes" / "triangle").symlink_to(data / "acme" / "elsewhere" / "triangle" / "a")
    loaded = _load(_image_folder(data / "acme" / "shapes"), _settings(tmp_path, data))
    assert list(loaded.class_names) == ["circle", "square", "triangle"]


def test_a_torchvision_root_with_files_linking_out_is_refused(tmp_path: Path, data: Path) -> None:
    raw = data / "acme" / "tv" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (tmp_path / "outside").write_bytes(b"x")
    (raw / "train-images-idx3-ubyte").symlink_to(tmp_path / "outside")
    spec = {"kind": "torchvision", "name": "MNIST", "root": str(data / "acme" / "tv")}
    with pytest.raises(DatasetError, match="leads outside its data source"):
        _load(spec, _settings(tmp_path, data))

    # The same link one folder further, behind a link that itself stays inside the source.
    (data / "acme" / "tv" / "MNIST" / "raw").rename(data / "acme" / "raw-elsewhere")
    (data / "acme" / "tv" / "MNIST" / "raw").symlink_to(data / "acme" / "raw-elsewhere")
    (data / "acme" / "tv" / "MNIST" / "loop").symlink_to(data / "acme" / "tv" / "MNIST")
    with pytest.raises(DatasetError, match="leads outside its data source"):
        _load(spec, _settings(tmp_path, data))


def test_the_worker_refuses_torchvision_downloads_unless_the_deployment_allows_them(
    tmp_path: Path, data: Path
) -> None:
    spec = {"kind": "torchvision", "name": "MNIST", "root": str(data / "acme"), "download": True}
    with pytest.raises(JobFailure, match="does not download datasets"):
        _load(spec, _settings(tmp_path, data))


def test_the_service_storage_is_refused_in_the_worker_too(tmp_path: Path, data: Path) -> None:
    settings = _settings(tmp_path, data, storage_url=(data / "acme" / "out").as_uri())
    with pytest.raises(JobFailure, match="service's own output storage"):
        _load(_image_folder(data / "acme" / "out" / "models"), settings)


def test_s3_sources_use_their_own_credentials_and_never_fall_back_to_the_instance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = {"access_key_id_env": "ACME_KEY", "secret_access_key_env": "ACME_SECRET"}
    settings = Settings(
        home=tmp_path,
        s3_access_key_id="service-key",
        s3_secret_access_key="service-secret",
        data_sources={"acme": [{"url": "s3://shared/acme", **keys}, "s3://bare/acme"]},
    )
    source, location = source_of("s3://shared/acme/cats", settings, "acme")
    with pytest.raises(JobFailure, match="not available on this worker") as missing:
        _source_storage(source, location, settings)
    assert "ACME_KEY" not in str(missing.value), "the variable's name is for the operator's log only"
    monkeypatch.setenv("ACME_KEY", "acme-key")
    monkeypatch.setenv("ACME_SECRET", "acme-secret")
    store = _source_storage(source, location, settings)
    assert store.client._request_signer._credentials.access_key == "acme-key"
    assert (store.bucket, store.prefix) == ("shared", "acme/cats")

    bare, location = source_of("s3://bare/acme", settings, "acme")
    with pytest.raises(JobFailure, match="no credentials configured"):
        _source_storage(bare, location, settings)
    opted_in = settings.model_copy(update={"data_sources_instance_credentials": True})
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # the chain may run here; keep it off the network
    assert _source_storage(bare, location, opted_in).bucket == "bare"
