"""Loaded by the Celery app on first use of its configuration (never at import of tasks.app)."""
from __future__ import annotations

from config.celery import celery_config
from config.settings import Settings

globals().update(celery_config(Settings.from_env()))
