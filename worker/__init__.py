"""The GPU worker: Celery tasks that claim jobs from SQL and run training/ on them."""
