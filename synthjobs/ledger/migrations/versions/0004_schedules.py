"""Schedules and their runs.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("cron", sa.String(200), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("model_name", sa.String(100), nullable=False),
        sa.Column("train", sa.JSON(), nullable=False),
        sa.Column("sample", sa.JSON(), nullable=True),
        sa.Column("policy", sa.JSON(), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("next_due_at", TS, nullable=False),
        sa.Column("last_due_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "schedule_runs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "schedule_id", sa.String(36), sa.ForeignKey("schedules.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("due_at", TS, nullable=False),
        sa.Column("fired_at", TS, nullable=False),
        sa.Column("fired_by", sa.String(200), nullable=False),
        sa.Column("job_id", sa.String(36), nullable=True),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("decision", sa.JSON(), nullable=True),
        sa.Column("sample_job_id", sa.String(36), nullable=True),
        sa.UniqueConstraint("schedule_id", "due_at", name="uq_schedule_runs_due"),
    )
    op.create_index("ix_schedule_runs_schedule_id", "schedule_runs", ["schedule_id"])


def downgrade() -> None:
    op.drop_table("schedule_runs")
    op.drop_table("schedules")
