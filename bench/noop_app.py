"""The service's Celery app plus a no-op task: Celery's own ceiling on the same settings."""
from __future__ import annotations

from tasks.app import app
from tasks.base import DomainTask


@app.task(base=DomainTask, bind=True, name="bench.noop")
def noop(self: DomainTask, **kwargs: object) -> None:
    """Does nothing: what remains is Celery's own per-task cost."""


@app.task(base=DomainTask, bind=True, name="bench.echo", ignore_result=False)
def echo(self: DomainTask, **kwargs: object) -> dict[str, object]:
    """Returns a small dict: the round trip of a result-returning task, nothing else."""
    return {"ok": True}
