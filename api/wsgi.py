"""WSGI entry for gunicorn: `gunicorn api.wsgi:app`."""
from __future__ import annotations

from api import create_app
from config.logging import configure_logging

configure_logging()
app = create_app()
