"""The Celery app. Its configuration is read lazily, so importing this connects to nothing."""
from __future__ import annotations

from celery import Celery

from tasks.serialization import use_fast_json

use_fast_json()
app = Celery("conversation")
app.config_from_object("tasks.celeryconfig")
app.autodiscover_tasks(["tasks"], related_name="conversation_tasks", force=True)
