"""The service's Celery app, plus a task that kills its own worker process for one payload,
as the OOM killer or a segfault would (tests only: `running_worker(app_module=...)`)."""
from __future__ import annotations

import os
import signal
from typing import Any

from conversation.bootstrap import container
from tasks.app import app
from tasks.base import DomainTask


@app.task(base=DomainTask, bind=True, name="test.crash_worker")
def crash_worker(self: DomainTask, **kwargs: Any) -> None:
    """Count this run in Redis; SIGKILL this process when the payload is "poison"."""
    settings = container().settings
    container().redis.incr(f"{settings.redis_key_prefix}crash-runs:{kwargs['payload']}")
    if kwargs["payload"] == "poison":
        os.kill(os.getpid(), signal.SIGKILL)
