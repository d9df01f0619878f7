"""Settings read from the environment, as a worker process reads them (the worker tests share it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from synthjobs.settings import Settings, get_settings


def worker_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str, **env: str
) -> Iterator[Settings]:
    """Settings for a worker on `database_url` with a local store under `tmp_path`, plus `env` (no prefix).

    Every SYNTHJOBS_ variable of the test process is cleared first, so a developer's own environment cannot
    change what a test runs; the cached settings are dropped before and after.
    """
    for name in Settings.model_fields:
        monkeypatch.delenv(f"SYNTHJOBS_{name.upper()}", raising=False)
    base = {
        "HOME": str(tmp_path / "home"),
        "DATABASE_URL": database_url,
        "STORAGE_URL": (tmp_path / "store").as_uri(),
        "DEVICE": "cpu",
    }
    for name, value in {**base, **env}.items():
        monkeypatch.setenv(f"SYNTHJOBS_{name}", value)
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()
