"""What the worker does with get_context's result besides storing it: Celery reads its
settings by name and ignores a name it does not know, so a setting that is not one does
nothing, silently (a context was rendered to 1,024 characters behind a 200 in config)."""
from __future__ import annotations

from celery.app.defaults import NAMESPACES, flatten
from celery.utils.saferepr import saferepr

from config.celery import celery_config
from config.settings import Settings

# Read from the app's configuration by celery-redbeat, not by Celery.
THIRD_PARTY_PREFIXES = ("redbeat_",)


def test_every_celery_setting_is_one_celery_knows() -> None:
    known = {name for name, _ in flatten(NAMESPACES)}
    config = celery_config(Settings(broker_url="redis://broker/1",
                                    result_backend="redis://backend/2"))
    unknown = sorted(name for name in config
                     if name not in known and not name.startswith(THIRD_PARTY_PREFIXES))
    assert unknown == []


def test_a_context_result_is_rendered_short_for_the_worker() -> None:
    from tasks.conversation_tasks import get_context

    context = {"conversation_id": "c" * 32, "model": "gpt-4o", "window": "128k",
               "strategy": "summary_buffer", "max_tokens": 120_000, "tokens": 90_000,
               "total_messages": 5_000, "truncated": True, "summary": "s" * 2_000,
               "summary_pending": False,
               "messages": [{"role": "user", "content": "x" * 200}] * 3_000}
    # What Celery's tracer renders (celery.app.trace: saferepr(R, task.resultrepr_maxsize)).
    shown = saferepr(context, get_context.resultrepr_maxsize)
    assert shown.startswith("{'conversation_id': '" + "c" * 32)
    assert len(shown) < 100
