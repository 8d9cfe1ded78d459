"""The service's Celery app plus a no-op task: Celery's own ceiling on the same settings."""
from __future__ import annotations

from tasks.app import app
from tasks.base import DomainTask


@app.task(base=DomainTask, bind=True, name="bench.noop")
def noop(self: DomainTask, **kwargs: object) -> None:
    """Does nothing: what remains is Celery's own per-task cost."""
