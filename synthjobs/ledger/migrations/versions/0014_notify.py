"""Per-job and per-schedule `notify`: the destination (url, events) and its signing secret.

A schedule's notify is copied to every job it starts, secret included, so its runs sign with the secret
shown once at the schedule's creation. The secret columns (and the endpoints' one) are wide enough for a
secret encrypted at rest.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("jobs", "schedules"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("notify", sa.JSON(), nullable=True))
            batch.add_column(sa.Column("notify_secret", sa.String(500), nullable=True))
    with op.batch_alter_table("webhooks") as batch:
        batch.alter_column("secret", existing_type=sa.String(100), type_=sa.String(500))


def downgrade() -> None:
    with op.batch_alter_table("webhooks") as batch:
        batch.alter_column("secret", existing_type=sa.String(500), type_=sa.String(100))
    for table in ("schedules", "jobs"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("notify_secret")
            batch.drop_column("notify")
