"""Celery app and tasks: a thin layer over `unlearn.jobs` and `unlearn.operations`."""
