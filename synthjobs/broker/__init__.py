"""The broker: the only package that imports Celery, kombu or redis (task names, config, publish, depth)."""
