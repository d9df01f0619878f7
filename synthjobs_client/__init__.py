"""The synthjobs HTTP client and the `synthjobs` command's job commands.

Installs with httpx, Typer and Rich alone (`pip install synthjobs`): nothing here imports the server
(SQLAlchemy, Celery, boto3, torch). The server's own commands (`synthjobs api|worker|beat|...`) are
dispatched to `synthjobs.server_cli`, imported only when one of them runs.
"""
