"""Alembic environment: the database URL comes from synthjobs settings unless the caller set one."""

from __future__ import annotations

from alembic import context

from synthjobs.ledger.db import get_engine
from synthjobs.ledger.tables import Base
from synthjobs.settings import get_settings

config = context.config
url = config.get_main_option("sqlalchemy.url") or get_settings().resolved_database_url()

if context.is_offline_mode():
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    with get_engine(url).connect() as connection:
        context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
