"""Loading the plugin modules named by `SYNTHJOBS_PLUGINS`, which register extra kinds.

A plugin is an ordinary importable module whose import registers what it adds: job kinds with
`synthjobs.rules.kinds.register_kind`, dataset kinds with
`synthjobs.rules.dataset_kinds.register_dataset_kind`. Their worker code (a job pipeline, a dataset
loader) is named by a `module:function` string the worker alone imports, so the plugin module itself
imports nothing of the worker and the API process stays free of torch. Example:
`tests/integration/fake_kinds.py`. The API process and every worker import the same list, so a job the
API accepts is one the worker knows how to run. Loading is idempotent; it happens when the API app or the
worker's Celery app is built, before either reads a registry.
"""

from __future__ import annotations

import importlib
import os

from synthjobs.settings import Settings, get_settings


def plugin_names(value: str) -> list[str]:
    """The module names in a `SYNTHJOBS_PLUGINS` value (comma- or space-separated)."""
    return [name for name in value.replace(",", " ").split() if name]


def load_plugins(settings: Settings | None = None, *, env_only: bool = False) -> list[str]:
    """Import every configured plugin module (once per process); returns their names.

    `env_only` reads `SYNTHJOBS_PLUGINS` itself instead of building the settings: `api.schemas` needs the
    dataset kinds at import, before any app (or test) has settled which settings to use.
    """
    value = os.environ.get("SYNTHJOBS_PLUGINS", "") if env_only else (settings or get_settings()).plugins
    names = plugin_names(value)
    for name in names:
        importlib.import_module(name)
    return names
