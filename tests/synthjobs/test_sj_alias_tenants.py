"""Alias history and rollback belong to the alias's tenant; migration 0006 repairs rows written without it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy.orm import Session

from synthjobs.ledger import registry
from synthjobs.ledger.db import dispose_engines, session_scope
from synthjobs.ledger.migrate import alembic_config
from synthjobs.ledger.tables import DEFAULT_TENANT, AliasEvent, Model
from tests.support.services import fresh_postgres_database

DATASET = {"class_names": ["0", "1"]}
TENANTS = ("acme", "globex")


def _register(session: Session, tenant: str, name: str = "shared-cvae") -> Model:
    return registry.register_model(
        session,
        model_id=str(uuid.uuid4()),
        name=name,
        training_job_id=None,
        checkpoint_uri=f"file:///models/{tenant}/{name}.pt",
        hyperparameters={},
        metrics={},
        dataset=DATASET,
        tenant=tenant,
    )


def test_alias_history_and_rollback_target_stay_within_the_aliass_tenant(database_url: str) -> None:
    ids: dict[str, list[str]] = {}
    with session_scope(database_url) as session:
        for tenant in TENANTS:
            first, second = _register(session, tenant), _register(session, tenant)
            registry.set_alias(session, "shared-cvae", "champion", first)
            registry.set_alias(session, "shared-cvae", "champion", second, reason="better")
            ids[tenant] = [first.id, second.id]
    with session_scope(database_url) as session:
        for tenant in TENANTS:
            history = registry.alias_history(session, "shared-cvae", "champion", tenant=tenant)
            assert [(e.tenant, e.from_model_id, e.to_model_id) for e in history] == [
                (tenant, ids[tenant][0], ids[tenant][1]),
                (tenant, None, ids[tenant][0]),
            ]
            previous = registry.previous_target(session, "shared-cvae", "champion", tenant=tenant)
            assert previous is not None and previous.id == ids[tenant][0]
        assert registry.alias_history(session, "shared-cvae", "champion", tenant=DEFAULT_TENANT) == []
        assert registry.previous_target(session, "shared-cvae", "champion", tenant=DEFAULT_TENANT) is None


def test_rollback_target_ignores_a_history_row_naming_another_tenants_model(database_url: str) -> None:
    with session_scope(database_url) as session:
        theirs, ours = _register(session, "acme"), _register(session, "globex")
        registry.set_alias(session, "shared-cvae", "champion", ours)
        # A history row as the old code could leave it: in globex's history, pointing at acme's model.
        session.add(
            AliasEvent(
                tenant="globex",
                name="shared-cvae",
                alias="champion",
                from_model_id=theirs.id,
                to_model_id=ours.id,
            )
        )
    with session_scope(database_url) as session:
        assert registry.previous_target(session, "shared-cvae", "champion", tenant="globex") is None


# --- migration 0006 -------------------------------------------------------------------------------------

MODELS = sa.table(
    "models",
    sa.column("id", sa.String),
    sa.column("tenant", sa.String),
    sa.column("name", sa.String),
    sa.column("version", sa.Integer),
    sa.column("checkpoint_uri", sa.Text),
    sa.column("hyperparameters", sa.JSON),
    sa.column("metrics", sa.JSON),
    sa.column("dataset", sa.JSON),
    sa.column("created_at", sa.DateTime(timezone=True)),
)
ALIASES = sa.table(
    "model_aliases",
    sa.column("tenant", sa.String),
    sa.column("name", sa.String),
    sa.column("alias", sa.String),
    sa.column("model_id", sa.String),
    sa.column("updated_at", sa.DateTime(timezone=True)),
)
EVENTS = sa.table(
    "alias_events",
    sa.column("id", sa.Integer),
    sa.column("tenant", sa.String),
    sa.column("name", sa.String),
    sa.column("alias", sa.String),
    sa.column("from_model_id", sa.String),
    sa.column("to_model_id", sa.String),
    sa.column("actor", sa.String),
    sa.column("reason", sa.Text),
    sa.column("at", sa.DateTime(timezone=True)),
)


@pytest.fixture(params=["sqlite", "postgres"])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no schema at all, on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        dispose_engines()
        return
    with fresh_postgres_database(request.getfixturevalue("postgres_admin_url"), migrate=False) as url:
        yield url


def _write_old_alias_moves(url: str) -> dict[str, list[str]]:
    """Two tenants' `shared-cvae@champion` moved twice each, with history rows as the old code wrote them."""
    now = datetime.now(UTC)
    ids = {tenant: [str(uuid.uuid4()), str(uuid.uuid4())] for tenant in TENANTS}
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        for tenant, (first, second) in ids.items():
            for version, model_id in enumerate((first, second), start=1):
                connection.execute(
                    MODELS.insert().values(
                        id=model_id,
                        tenant=tenant,
                        name="shared-cvae",
                        version=version,
                        checkpoint_uri="file:///m.pt",
                        hyperparameters={},
                        metrics={},
                        dataset=DATASET,
                        created_at=now,
                    )
                )
            connection.execute(
                ALIASES.insert().values(
                    tenant=tenant, name="shared-cvae", alias="champion", model_id=second, updated_at=now
                )
            )
            for previous, target in ((None, first), (first, second)):
                connection.execute(  # the old set_alias: no tenant given, so the column default
                    EVENTS.insert().values(
                        tenant=DEFAULT_TENANT,
                        name="shared-cvae",
                        alias="champion",
                        from_model_id=previous,
                        to_model_id=target,
                        actor="api",
                        reason="",
                        at=now,
                    )
                )
        connection.execute(  # delete_alias always wrote its tenant: left as it is
            EVENTS.insert().values(
                tenant="globex",
                name="old-cvae",
                alias="staging",
                from_model_id=ids["globex"][0],
                to_model_id=None,
                actor="api",
                reason="",
                at=now,
            )
        )
    engine.dispose()
    return ids


def test_migration_0006_gives_alias_history_written_without_a_tenant_its_aliass_tenant(
    empty_database_url: str,
) -> None:
    config = alembic_config(empty_database_url)
    before = ScriptDirectory.from_config(config).get_revision("0006").down_revision
    assert isinstance(before, str)
    command.upgrade(config, before)
    ids = _write_old_alias_moves(empty_database_url)
    command.upgrade(config, "head")
    with session_scope(empty_database_url) as session:
        for tenant in TENANTS:
            history = registry.alias_history(session, "shared-cvae", "champion", tenant=tenant)
            assert [e.to_model_id for e in history] == ids[tenant][::-1]
            previous = registry.previous_target(session, "shared-cvae", "champion", tenant=tenant)
            assert previous is not None and previous.id == ids[tenant][0]
        assert registry.alias_history(session, "shared-cvae", "champion", tenant=DEFAULT_TENANT) == []
        assert [
            e.tenant for e in registry.alias_history(session, "old-cvae", "staging", tenant="globex")
        ] == ["globex"]
