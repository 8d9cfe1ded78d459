"""The Celery app. Its configuration is read lazily, so importing this connects to nothing."""
from __future__ import annotations

import sys

from celery import Celery

from tasks.serialization import use_fast_json

use_fast_json()
# A hostile payload nested 1,000 deep must reach validation (and the dead-letter queue), not
# crash the worker: the prefork pool pickles task arguments recursively, about three frames a
# level, past Python's default limit of 1,000.
sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
app = Celery("conversation")
app.config_from_object("tasks.celeryconfig")
app.autodiscover_tasks(["tasks"], related_name="conversation_tasks", force=True)
