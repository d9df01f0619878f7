"""The job ledger in SQL: the only package that imports SQLAlchemy (tables, transitions, migrations)."""
