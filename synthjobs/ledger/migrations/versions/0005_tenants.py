"""Tenants: a tenant on every owned row, API tokens, idempotency keys.

Existing rows belong to the tenant `default`.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def _tenant() -> sa.Column:
    return sa.Column("tenant", sa.String(100), nullable=False, server_default="default")


def upgrade() -> None:
    for table in ("jobs", "datasets", "alias_events"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(_tenant())
    op.create_index("ix_jobs_tenant_created", "jobs", ["tenant", "created_at"])
    op.create_index("ix_jobs_tenant_state", "jobs", ["tenant", "state"])
    with op.batch_alter_table("models") as batch:
        batch.add_column(_tenant())
        batch.drop_constraint("uq_models_name_version", type_="unique")
        batch.create_unique_constraint("uq_models_tenant_name_version", ["tenant", "name", "version"])
    with op.batch_alter_table("schedules") as batch:
        batch.add_column(_tenant())
        batch.create_unique_constraint("uq_schedules_tenant_name", ["tenant", "name"])
    _recreate_model_aliases()
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant", sa.String(100), nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
    )
    op.create_index("ix_api_tokens_tenant", "api_tokens", ["tenant"])
    op.create_table(
        "idempotency_keys",
        sa.Column("tenant", sa.String(100), primary_key=True),
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("request_sha256", sa.String(64), nullable=False),
        sa.Column("resource", sa.String(32), nullable=False),
        sa.Column("resource_id", sa.String(36), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_idempotency_keys_created_at", "idempotency_keys", ["created_at"])


def _recreate_model_aliases() -> None:
    """The alias key gains the tenant: (tenant, name, alias)."""
    op.rename_table("model_aliases", "model_aliases_old")
    op.create_table(
        "model_aliases",
        sa.Column("tenant", sa.String(100), primary_key=True, server_default="default"),
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("alias", sa.String(64), primary_key=True),
        sa.Column("model_id", sa.String(36), sa.ForeignKey("models.id"), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.execute(
        "INSERT INTO model_aliases (tenant, name, alias, model_id, updated_at) "
        "SELECT 'default', name, alias, model_id, updated_at FROM model_aliases_old"
    )
    op.drop_table("model_aliases_old")


def downgrade() -> None:
    raise NotImplementedError("0005 adds tenants; going back would merge tenants' data")
