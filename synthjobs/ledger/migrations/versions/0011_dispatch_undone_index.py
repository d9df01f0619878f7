"""A partial index on undone shards, for the dispatcher's backlog query (`ledger.dispatch.backlogs`).

Every dispatch aggregates the PENDING/RUNNING shards of live jobs. Without this index PostgreSQL reads
every shard row ever written (DONE ones included) to find them; with it, it reads only the undone ones,
so the cost of a dispatch follows the live backlog, not the table's history (see bench/cluster_sim.py).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNDONE = sa.text("state IN ('PENDING', 'RUNNING')")


def upgrade() -> None:
    op.create_index(
        "ix_job_shards_undone",
        "job_shards",
        ["job_id", "released_at", "state"],
        postgresql_where=UNDONE,
        sqlite_where=UNDONE,
    )


def downgrade() -> None:
    op.drop_index("ix_job_shards_undone", table_name="job_shards")
