"""The Celery app and the thin task entrypoints of the service."""
