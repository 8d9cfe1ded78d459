"""Erasure's pass over the dead-letter queue, off the admin request and the cleanup step that
asked for it (conversation.services.erasure.Eraser)."""
from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

from conversation.bootstrap import container
from tasks.base import DomainTask, InvalidPayload

log = logging.getLogger(__name__)


@shared_task(base=DomainTask, bind=True, name="conversation.erase_queued_letters")
def erase_queued_letters(self: DomainTask, **kwargs: Any) -> dict[str, Any]:
    """Drop or edit the queued dead letters that hold erased data (internal). Acknowledged
    after the pass (acks_late): a worker dying midway gets it delivered again, and the pass,
    idempotent, runs again."""
    targets = kwargs.get("targets")
    if set(kwargs) != {"targets"} or not isinstance(targets, list) or not all(
            isinstance(t, list) and len(t) == 3 and isinstance(t[0], str)
            and all(v is None or isinstance(v, str) for v in t[1:]) for t in targets):
        raise InvalidPayload({"targets": ["a list of [tenant, conversation, session]"]})
    changed = container().eraser.erase_queued_now([(t[0], t[1], t[2]) for t in targets])
    log.info("erasure: %d queued dead letter(s) dropped or edited", changed)
    return {"changed": changed}
