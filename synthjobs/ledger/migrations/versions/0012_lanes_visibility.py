"""A schedule's `priority` for the jobs it creates (`schedules.priority`; NULL: the training spec's own),
and when each shard was first claimed (`job_shards.claimed_at`, for the release -> claim wait metric).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("schedules") as batch:
        batch.add_column(sa.Column("priority", sa.String(8), nullable=True))
    with op.batch_alter_table("job_shards") as batch:
        batch.add_column(sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("job_shards") as batch:
        batch.drop_column("claimed_at")
    with op.batch_alter_table("schedules") as batch:
        batch.drop_column("priority")
