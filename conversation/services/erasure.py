"""Erasure and retention: removing a conversation, or all of a tenant's data, from both tiers
and everything derived from it (summaries, statistics rows, markers, session records)."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from conversation.services.ports import ActiveStore, Repository

log = logging.getLogger(__name__)

RETENTION_BATCH = 500


@dataclass(frozen=True)
class TenantErasure:
    conversations: int
    dead_letters: int
    sessions: int
    api_keys: int = 0  # revoked


class Eraser:
    def __init__(self, active: ActiveStore, repository: Repository) -> None:
        self.active = active
        self.repository = repository

    def erase_conversation(self, conversation_id: str) -> bool:
        """True when the conversation existed in either tier. Its dead letters go too (they
        hold its messages): those naming it, and those of its session naming none."""
        conversation = (self.active.get_conversation(conversation_id)
                        or self.repository.get_conversation(conversation_id))
        in_redis = self.active.erase_conversation(conversation_id)
        in_postgres = self.repository.erase_conversation(conversation_id)
        if conversation is not None:
            self.repository.erase_dead_letters(
                conversation.tenant_id, conversation_id, conversation.session_id)
        log.warning("erased conversation %s", conversation_id)
        return bool(in_redis or in_postgres)

    def erase_tenant(self, tenant_id: str) -> TenantErasure:
        active = [c.id for c in self.active.active_conversations(tenant_id)]
        persisted = self.repository.conversation_ids(tenant_id)
        for conversation_id in {*active, *persisted}:
            # Persisted ones leave a "migrated" marker in Redis: it goes too.
            self.active.erase_conversation(conversation_id)
        removed = self.repository.erase_tenant(tenant_id)
        sessions = self.active.erase_tenant_sessions(tenant_id)
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
        for tenant_id, days in self.repository.retention().items():
            if days <= 0:
                continue
            cutoff = now - timedelta(days=days)
            while expired := self.repository.expired_conversations(
                tenant_id, cutoff, RETENTION_BATCH
            ):
                for conversation_id in expired:
                    self.erase_conversation(conversation_id)
                erased += len(expired)
        if erased:
            log.warning("retention erased %d conversation(s)", erased)
        return erased
