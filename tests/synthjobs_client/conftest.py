"""Fixtures for the client tests: no `SYNTHJOBS_*` variable of the caller's shell leaks into a test."""

from __future__ import annotations

import pytest

from synthjobs.settings import Settings, get_settings


@pytest.fixture(autouse=True)
def clean_settings_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Drop every `SYNTHJOBS_<field>` variable of the caller's shell, so a test sees only its own."""
    for name in Settings.model_fields:
        monkeypatch.delenv(f"SYNTHJOBS_{name.upper()}", raising=False)
    get_settings.cache_clear()
