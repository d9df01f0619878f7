"""Settings: the embedded default under home, SYNTHJOBS_* overrides, and secrets kept out of repr."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from synthjobs.settings import Settings, get_settings


def test_defaults_point_under_home(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    home = (tmp_path / "home").resolve()
    assert settings.resolved_database_url() == f"sqlite:///{home}/synthjobs.db"
    assert settings.resolved_broker_url() == f"sqla+sqlite:///{home}/broker.db"
    assert settings.resolved_storage_url() == f"file://{home}/storage"
    assert settings.resolved_storage_url() == (home / "storage").as_uri()


def test_default_home_is_dot_synthjobs_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    assert settings.home == Path(".synthjobs")
    assert settings.resolved_database_url() == f"sqlite:///{tmp_path.resolve()}/.synthjobs/synthjobs.db"


def test_explicit_urls_replace_the_defaults(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path,
        database_url="postgresql+psycopg://u@db/jobs",
        broker_url="redis://redis:6379/0",
        storage_url="s3://bucket/prefix",
    )
    assert settings.resolved_database_url() == "postgresql+psycopg://u@db/jobs"
    assert settings.resolved_broker_url() == "redis://redis:6379/0"
    assert settings.resolved_storage_url() == "s3://bucket/prefix"


def test_prefixed_environment_variables_override_the_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYNTHJOBS_HOME", str(tmp_path / "env-home"))
    monkeypatch.setenv("SYNTHJOBS_BROKER_URL", "redis://redis:6379/1")
    monkeypatch.setenv("SYNTHJOBS_STORAGE_URL", "s3://from-env/p")
    monkeypatch.setenv("SYNTHJOBS_MAX_EPOCHS", "5")
    monkeypatch.setenv("SYNTHJOBS_ENQUEUE_TIMEOUT", "0.5")
    monkeypatch.setenv("SYNTHJOBS_QUEUE", "gpu-test")
    monkeypatch.setenv("DATABASE_URL", "postgresql://unprefixed/ignored")
    settings = Settings()
    assert settings.home == tmp_path / "env-home"
    assert settings.resolved_database_url() == f"sqlite:///{(tmp_path / 'env-home').resolve()}/synthjobs.db"
    assert settings.resolved_broker_url() == "redis://redis:6379/1"
    assert settings.resolved_storage_url() == "s3://from-env/p"
    assert (settings.max_epochs, settings.enqueue_timeout, settings.queue) == (5, 0.5, "gpu-test")


def test_get_settings_is_cached_until_cleared(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNTHJOBS_QUEUE", "first")
    assert get_settings() is get_settings() and get_settings().queue == "first"
    monkeypatch.setenv("SYNTHJOBS_QUEUE", "second")
    assert get_settings().queue == "first"
    get_settings.cache_clear()
    assert get_settings().queue == "second"
    get_settings.cache_clear()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SYNTHJOBS_WORKER_PROCESSES", "0"),
        ("SYNTHJOBS_TORCH_THREADS", "0"),
        ("SYNTHJOBS_ENQUEUE_TIMEOUT", "0"),
        ("SYNTHJOBS_VISIBILITY_TIMEOUT", "10"),
        ("SYNTHJOBS_API_PORT", "eighty"),
    ],
)
def test_invalid_environment_values_are_refused(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError, match=variable.removeprefix("SYNTHJOBS_").lower()):
        Settings()


def test_resolved_torch_threads_honours_an_explicit_value() -> None:
    assert Settings(torch_threads=3).resolved_torch_threads() == 3
    assert Settings(torch_threads=1, worker_processes=8).resolved_torch_threads() == 1


def test_resolved_torch_threads_leaves_a_core_and_splits_the_rest() -> None:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    assert Settings().resolved_torch_threads() == max(1, cores - 1)
    assert Settings(worker_processes=2).resolved_torch_threads() == max(1, (cores - 1) // 2)
    assert Settings(worker_processes=10_000).resolved_torch_threads() == 1


def test_secrets_do_not_show_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNTHJOBS_S3_SECRET_ACCESS_KEY", "hunter2-secret")
    settings = Settings(s3_access_key_id="AKIA-visible-id")
    assert settings.s3_secret_access_key is not None and settings.s3_access_key_id is not None
    assert settings.s3_secret_access_key.get_secret_value() == "hunter2-secret"
    assert settings.s3_access_key_id.get_secret_value() == "AKIA-visible-id"
    for text in (repr(settings), str(settings), repr(settings.model_dump())):
        assert "hunter2-secret" not in text and "AKIA-visible-id" not in text


def test_ensure_home_creates_home_only_when_a_default_points_into_it(tmp_path: Path) -> None:
    Settings(home=tmp_path / "used").ensure_home()
    assert (tmp_path / "used").is_dir()
    Settings(
        home=tmp_path / "unused", database_url="sqlite://", broker_url="memory://", storage_url="s3://b/p"
    ).ensure_home()
    assert not (tmp_path / "unused").exists()
