"""Erasure and retention: removing a conversation, or all of a tenant's data, from both tiers
and everything derived from it (summaries, statistics rows, markers, session records)."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from conversation.services.ports import ActiveErasure, ArchiveErasure, QueuedDeadLetters

log = logging.getLogger(__name__)

RETENTION_BATCH = 500

# What the dead-letter queue's copies are erased for: (tenant, conversation or None for the
# whole tenant, the conversation's session).
Target = tuple[str, str | None, str | None]


@dataclass(frozen=True)
class TenantErasure:
    conversations: int
    dead_letters: int
    sessions: int
    api_keys: int = 0  # revoked


def without_erased(
    kwargs: Any,
    tenant_id: str,
    conversation_id: str | None = None,
    session_id: str | None = None,
) -> Any:
    """A dead letter's task payload less the erased data (the tenant's, or the
    conversation's): None when it is the erased data or nothing else is left of it, the
    payload itself when it holds none of it, else a copy without the erased batch items.
    The same rule as the repository's erase_dead_letters applies to the dead_letters table."""
    def erased(item: Any) -> bool:
        if not isinstance(item, dict):
            return False
        if conversation_id is None:
            return item.get("tenant_id") == tenant_id
        if item.get("conversation_id") == conversation_id:
            return item.get("tenant_id") in (None, tenant_id)
        return (item.get("tenant_id") == tenant_id and item.get("session_id") == session_id
                and "conversation_id" not in item)

    if not isinstance(kwargs, dict):
        return kwargs
    if kwargs.get("_truncated"):
        preview = str(kwargs.get("preview", ""))
        tenant = f'"tenant_id": "{tenant_id}"' in preview
        named = (tenant if conversation_id is None
                 else f'"conversation_id": "{conversation_id}"' in preview
                 or (tenant and f'"session_id": "{session_id}"' in preview))
        return None if named else kwargs
    if erased(kwargs):
        return None
    for name in ("messages", "sessions"):
        items = kwargs.get(name)
        if isinstance(items, list) and any(erased(item) for item in items):
            kept = [item for item in items if not erased(item)]
            return {**kwargs, name: kept} if kept else None
    return kwargs


class Eraser:
    """Erasure needs both tiers: with Redis out of reach it raises ActiveStoreUnavailable
    (the API answers 503) before it erases anything; should Redis go away midway, a retry
    finishes the job, every step being idempotent."""

    def __init__(
        self,
        active: ActiveErasure,
        repository: ArchiveErasure,
        queued_letters: QueuedDeadLetters | None = None,
        erase_later: Callable[[list[Target]], None] | None = None,
    ) -> None:
        self.active = active
        self.repository = repository
        self.queued_letters = queued_letters
        self.erase_later = erase_later

    def _erase_queued(self, targets: list[Target]) -> None:
        """The copies on the dead-letter queue go too. That pass reads and rewrites the whole
        queue: it is a task of its own (`erase_later`, the stats queue), not part of an admin
        request or a cleanup step. Best effort: the broker being down must not undo the rest
        of an erasure, so a failure is an ERROR line for the operators."""
        if self.queued_letters is None or not targets:
            return
        try:
            if self.erase_later is not None:
                self.erase_later(targets)
            else:
                self.erase_queued_now(targets)
        except Exception:
            log.exception("could not erase the queued dead letters of %d target(s)", len(targets))

    def erase_queued_now(self, targets: list[Target]) -> int:
        """One pass over the dead-letter queue for all `targets`; how many letters were
        dropped or edited. Idempotent: a second pass finds nothing more to erase, so a task
        that died midway is simply run again."""
        if self.queued_letters is None or not targets:
            return 0

        def edit(kwargs: Any) -> Any:
            for tenant_id, conversation_id, session_id in targets:
                kwargs = without_erased(kwargs, tenant_id, conversation_id, session_id)
                if kwargs is None:
                    break
            return kwargs

        return self.queued_letters.erase_queued(edit)

    def erase_conversation(self, conversation_id: str) -> bool:
        """True when the conversation existed in either tier. Its dead letters go too (they
        hold its messages): those naming it, and those of its session naming none."""
        erased, target = self._erase_conversation(conversation_id)
        if target is not None:
            self._erase_queued([target])
        return erased

    def _erase_conversation(self, conversation_id: str) -> tuple[bool, Target | None]:
        """Both tiers and the dead-letter rows; the target the queue's copies are erased for."""
        conversation = (self.active.get_conversation(conversation_id)
                        or self.repository.get_conversation(conversation_id))
        in_redis = self.active.erase_conversation(conversation_id)
        in_postgres = self.repository.erase_conversation(conversation_id)
        target = None
        if conversation is not None:
            target = (conversation.tenant_id, conversation_id, conversation.session_id)
            self.repository.erase_dead_letters(*target)
        log.warning("erased conversation %s", conversation_id)
        return bool(in_redis or in_postgres), target

    def erase_tenant(self, tenant_id: str) -> TenantErasure:
        active = [c.id for c in self.active.active_conversations(tenant_id)]
        persisted = self.repository.conversation_ids(tenant_id)
        for conversation_id in {*active, *persisted}:
            # Persisted ones leave a "migrated" marker in Redis: it goes too.
            self.active.erase_conversation(conversation_id)
        removed = self.repository.erase_tenant(tenant_id)
        sessions = self.active.erase_tenant_sessions(tenant_id)
        self._erase_queued([(tenant_id, None, None)])
        log.warning("erased tenant %s", tenant_id)
        return TenantErasure(
            conversations=len(set(active) - set(persisted)) + removed["conversations"],
            dead_letters=removed["dead_letters"],
            sessions=sessions,
            api_keys=removed["api_keys"],
        )

    def purge_expired(self, now: datetime | None = None) -> int:
        """Erase persisted conversations older than their tenant's retention (0: keep all)."""
        now = now or datetime.now(UTC)
        erased = 0
        targets: list[Target] = []
        for tenant_id, days in self.repository.retention().items():
            if days <= 0:
                continue
            cutoff = now - timedelta(days=days)
            while expired := self.repository.expired_conversations(
                tenant_id, cutoff, RETENTION_BATCH
            ):
                for conversation_id in expired:
                    _, target = self._erase_conversation(conversation_id)
                    if target is not None:
                        targets.append(target)
                erased += len(expired)
        # The dead-letter queue in one pass for them all, not one per conversation.
        self._erase_queued(targets)
        if erased:
            log.warning("retention erased %d conversation(s)", erased)
        return erased
