"""Model aliases with their history, and uploaded datasets.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "model_aliases",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("alias", sa.String(64), primary_key=True),
        sa.Column("model_id", sa.String(36), sa.ForeignKey("models.id"), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "alias_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("alias", sa.String(64), nullable=False),
        sa.Column("from_model_id", sa.String(36), nullable=True),
        sa.Column("to_model_id", sa.String(36), nullable=True),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", TS, nullable=False),
    )
    op.create_index("ix_alias_events_name_alias", "alias_events", ["name", "alias", "id"])
    op.create_table(
        "datasets",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("uri", sa.Text(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("num_images", sa.Integer(), nullable=False),
        sa.Column("image_shape", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("datasets")
    op.drop_index("ix_alias_events_name_alias", "alias_events")
    op.drop_table("alias_events")
    op.drop_table("model_aliases")
