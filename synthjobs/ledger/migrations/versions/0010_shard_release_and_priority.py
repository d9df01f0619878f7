"""Windowed release of sampling shards (`job_shards.released_at`) and job priority (`jobs.priority`).

Shards that exist when this runs were all published at submit under the old scheme, so they count as
released (at their last update): the reconciler keeps republishing them if their messages are lost.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("job_shards") as batch:
        batch.add_column(sa.Column("released_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE job_shards SET released_at = updated_at")
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("priority", sa.String(8), nullable=False, server_default="normal"))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("priority")
    with op.batch_alter_table("job_shards") as batch:
        batch.drop_column("released_at")
