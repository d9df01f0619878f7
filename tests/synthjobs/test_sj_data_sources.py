"""Per-tenant data sources: a dataset URL must lie inside one of its tenant's sources, never in storage."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from synthjobs.rules.data_sources import (
    DataSource,
    DataSourceRefused,
    check_inside,
    local_location,
    match_source,
    parse_location,
)
from synthjobs.settings import Settings

STORAGE = "s3://service-bucket/service"
ACME = [DataSource(url="s3://shared/acme"), DataSource(url="file:///data/acme")]


def test_a_url_inside_a_source_matches_it_and_is_normalised() -> None:
    source, location = match_source("s3://shared/acme/./cats//2024", ACME, STORAGE)
    assert source.url == "s3://shared/acme"
    assert location.url == "s3://shared/acme/cats/2024" and location.path == "acme/cats/2024"
    source, location = match_source("file:///data/acme/shapes", ACME, STORAGE)
    assert source.url == "file:///data/acme" and location.path == "/data/acme/shapes"
    assert match_source("/data/acme", ACME, STORAGE)[1].path == "/data/acme"


@pytest.mark.parametrize(
    "url",
    [
        "s3://shared/acme2",  # a sibling whose name starts with the source's: segments, not startswith
        "s3://shared/ac",
        "s3://shared",
        "s3://other-bucket/acme",
        "file:///data/acme-evil",
        "file:///data",
        "/etc",
        "s3://shared/globex/cats",
    ],
)
def test_a_url_outside_every_source_of_the_tenant_is_refused(url: str) -> None:
    with pytest.raises(DataSourceRefused, match="not under one of this tenant's data sources"):
        match_source(url, ACME, STORAGE)


@pytest.mark.parametrize(
    "url",
    [
        "s3://shared/acme/../globex",
        "s3://shared/acme/%2e%2e/globex",
        "s3://shared/acme%2F..%2Fglobex",
        "file:///data/acme/%2E%2E/globex",
        "file:///data/acme/x\x00",
        "s3://shared/acme?versionId=1",
        "file://remote-host/data/acme",
        "gs://shared/acme",
        "s3:///acme",
        "s3://[shared/acme",
        "s3://user@shared/acme",
    ],
)
def test_dot_dot_encoded_or_not_and_malformed_urls_are_refused(url: str) -> None:
    with pytest.raises(DataSourceRefused):
        match_source(url, ACME, STORAGE)


def test_percent_encoding_is_decoded_before_matching() -> None:
    assert match_source("s3://shared/%61cme/x", ACME, STORAGE)[1].path == "acme/x"


@pytest.mark.parametrize(
    "url",
    [
        "s3://service-bucket/service",
        "s3://service-bucket/service/models",
        "s3://service-bucket/service/jobs/0000/train-state",
        "s3://service-bucket",  # a folder holding the storage is refused too
    ],
)
def test_the_service_storage_is_refused_even_when_a_source_covers_it(url: str) -> None:
    sources = [DataSource(url="s3://service-bucket")]
    with pytest.raises(DataSourceRefused, match="service's own output storage"):
        match_source(url, sources, STORAGE)
    assert match_source("s3://service-bucket/datasets", sources, STORAGE)[1].path == "datasets"


def test_local_service_storage_is_refused_under_a_local_source(tmp_path: Path) -> None:
    storage = (tmp_path / "storage").as_uri()
    sources = [DataSource(url=tmp_path.as_uri())]
    with pytest.raises(DataSourceRefused, match="service's own output storage"):
        match_source((tmp_path / "storage" / "models").as_uri(), sources, storage)
    assert match_source((tmp_path / "data").as_uri(), sources, storage)[0] == sources[0]


def test_a_tenant_without_sources_is_told_so() -> None:
    with pytest.raises(DataSourceRefused, match="no data sources configured"):
        match_source("s3://shared/acme", [], STORAGE)


def test_local_paths_are_matched_after_resolving_symlinks(tmp_path: Path) -> None:
    (tmp_path / "acme").mkdir()
    (tmp_path / "globex" / "secret").mkdir(parents=True)
    (tmp_path / "acme" / "escape").symlink_to(tmp_path / "globex" / "secret")
    sources = [DataSource(url=(tmp_path / "acme").as_uri())]
    storage = (tmp_path / "storage").as_uri()
    with pytest.raises(DataSourceRefused):
        match_source(str(tmp_path / "acme" / "escape"), sources, storage, resolve_local=os.path.realpath)


def test_check_inside_refuses_a_link_out_of_the_root(tmp_path: Path) -> None:
    root = local_location(str(tmp_path / "acme"))
    (tmp_path / "acme" / "cats").mkdir(parents=True)
    (tmp_path / "acme" / "cats" / "ok.png").write_bytes(b"x")
    (tmp_path / "other.png").write_bytes(b"x")
    (tmp_path / "acme" / "cats" / "bad.png").symlink_to(tmp_path / "other.png")
    (tmp_path / "acme" / "cats" / "alias.png").symlink_to(tmp_path / "acme" / "cats" / "ok.png")
    storage = (tmp_path / "storage").as_uri()
    ok = check_inside(str(tmp_path / "acme/cats/alias.png"), root, storage, resolve_local=os.path.realpath)
    assert ok.path == str(tmp_path / "acme/cats/ok.png")
    with pytest.raises(DataSourceRefused, match="leads outside its data source"):
        check_inside(str(tmp_path / "acme/cats/bad.png"), root, storage, resolve_local=os.path.realpath)


def test_sources_parse_from_strings_or_objects_and_credentials_come_in_pairs() -> None:
    assert DataSource.model_validate("s3://b/p").url == "s3://b/p"
    full = DataSource.model_validate(
        {"url": "s3://b/p", "access_key_id_env": "ACME_KEY", "secret_access_key_env": "ACME_SECRET"}
    )
    assert full.has_credentials and not DataSource(url="s3://b/p").has_credentials
    with pytest.raises(ValidationError, match="both"):
        DataSource(url="s3://b/p", access_key_id_env="ACME_KEY")
    with pytest.raises(ValidationError):
        DataSource(url="http://example.com/data")
    with pytest.raises(ValidationError):
        DataSource(url="s3://b/p", secret="x")  # type: ignore[call-arg]


def test_the_default_tenant_owns_the_legacy_data_roots_and_no_one_else_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    assert [s.url for s in Settings(home=home).resolved_data_sources("default")] == [
        (home / "data").resolve().as_uri()
    ]
    assert Settings(home=home).resolved_data_sources("acme") == []
    roots = Settings(home=home, data_roots=[tmp_path / "r"])
    assert [s.url for s in roots.resolved_data_sources("default")] == [(tmp_path / "r").as_uri()]
    assert roots.resolved_data_sources("acme") == []
    monkeypatch.setenv(
        "SYNTHJOBS_DATA_SOURCES",
        '{"acme": ["s3://shared/acme", {"url": "file:///data/acme"}], "default": ["s3://shared/ops"]}',
    )
    configured = Settings(home=home)
    assert [s.url for s in configured.resolved_data_sources("acme")] == [
        "s3://shared/acme",
        "file:///data/acme",
    ]
    assert [s.url for s in configured.resolved_data_sources("default")] == ["s3://shared/ops"]
    assert configured.resolved_data_sources("globex") == []


def test_parse_location_keeps_bucket_and_segments() -> None:
    location = parse_location("s3://bucket/a/b/")
    assert (location.scheme, location.bucket, location.segments) == ("s3", "bucket", ("a", "b"))
    assert parse_location("s3://bucket").url == "s3://bucket"
