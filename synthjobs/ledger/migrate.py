"""Bring a database to the latest schema with Alembic, from code or `synthjobs migrate`."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    """An Alembic config for this package's migrations, pointed at `database_url`."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade_database(database_url: str) -> None:
    """Apply every migration not yet applied (idempotent)."""
    command.upgrade(alembic_config(database_url), "head")
