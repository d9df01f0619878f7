"""Alias history carries its tenant: repair the rows written without one, index by tenant.

Before this revision `set_alias` wrote every alias move as the tenant `default`, so other tenants saw an
empty history (and could not roll back) while `default` read, and rolled back, everyone's moves. A move's
tenant is the tenant of the model it pointed the alias at (an alias only ever names its own tenant's
models, and `model_aliases` is keyed by that same tenant), so each such row takes the tenant of its
`to_model_id`. Removals (`to_model_id` NULL) were always written with their tenant and are left alone.
The models table is used rather than `model_aliases` because it names the exact model of each move, while
`model_aliases` holds only the current target and the same `name@alias` may exist in several tenants.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REPAIR = """
UPDATE alias_events
SET tenant = (SELECT models.tenant FROM models WHERE models.id = alias_events.to_model_id)
WHERE to_model_id IN (SELECT id FROM models)
"""


def upgrade() -> None:
    op.execute(REPAIR)
    op.drop_index("ix_alias_events_name_alias", table_name="alias_events")
    op.create_index("ix_alias_events_tenant_name_alias", "alias_events", ["tenant", "name", "alias", "id"])


def downgrade() -> None:
    op.drop_index("ix_alias_events_tenant_name_alias", table_name="alias_events")
    op.create_index("ix_alias_events_name_alias", "alias_events", ["name", "alias", "id"])
