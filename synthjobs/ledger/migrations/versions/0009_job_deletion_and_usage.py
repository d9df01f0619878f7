"""Job deletion and storage usage: when a job's outputs were (asked to be) deleted, its non-shard bytes and
a running sampling job's reserved bytes.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("delete_requested_at", TS, nullable=True))
        batch.add_column(sa.Column("deleted_at", TS, nullable=True))
        batch.add_column(sa.Column("output_bytes", sa.BigInteger(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("reserved_bytes", sa.BigInteger(), nullable=False, server_default="0"))
    # The retention pass looks for finished, undeleted jobs by age.
    op.create_index("ix_jobs_deleted_finished", "jobs", ["deleted_at", "finished_at"])


def downgrade() -> None:
    op.drop_index("ix_jobs_deleted_finished", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("reserved_bytes")
        batch.drop_column("output_bytes")
        batch.drop_column("deleted_at")
        batch.drop_column("delete_requested_at")
