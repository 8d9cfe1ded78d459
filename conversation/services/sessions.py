"""Session lifecycle: a close schedules the migration; a reconnect within the grace cancels it.

Cancellation is not `revoke`: the close bumps the session's generation and the migration task
carries it; a reconnect (or a new message) bumps it again, so the task, when it runs, finds its
generation stale and does nothing.
"""
from __future__ import annotations

import logging

from conversation.domain.messages import now_timestamp, parse_timestamp, utc_timestamp
from conversation.services.ports import (
    ActiveStore,
    ActiveStoreUnavailable,
    ClosedSession,
    Repository,
    Scheduler,
)

log = logging.getLogger(__name__)


class SessionLifecycle:
    def __init__(
        self,
        active: ActiveStore,
        scheduler: Scheduler,
        grace_seconds: float,
        repository: Repository | None = None,
    ) -> None:
        self.active = active
        self.scheduler = scheduler
        self.grace_seconds = grace_seconds
        self.repository = repository

    def close(
        self, tenant_id: str, session_id: str, closed_at: str | None = None
    ) -> ClosedSession | None:
        moment = utc_timestamp(parse_timestamp(closed_at)) if closed_at else now_timestamp()
        try:
            closed = self.active.close_session(tenant_id, session_id, moment)
        except ActiveStoreUnavailable:
            # Redis is down: the session's messages are in PostgreSQL now, close those; the
            # task retries (and dead-letters for a replay if Redis stays down), since dropping
            # the close would strand the Redis conversation until the idle sweep.
            self._close_outage_conversations(tenant_id, session_id, moment)
            raise
        if closed is None:
            # No conversation in Redis: whatever the session has is in PostgreSQL (written
            # during an outage), and ends with the session. With one in Redis, its migration
            # takes those over (absorb), so the common close touches no database.
            self._close_outage_conversations(tenant_id, session_id, moment)
            log.info("session %s has no active conversation: nothing to migrate", session_id)
            return None
        self.scheduler.schedule_migration(
            closed.conversation_id, closed.generation, countdown=self.grace_seconds
        )
        return closed

    def _close_outage_conversations(self, tenant_id: str, session_id: str, moment: str) -> None:
        if self.repository is None:
            return
        # Best effort: PostgreSQL being down must not stop the close in Redis.
        try:
            self.repository.close_active(tenant_id, session_id, moment)
        except Exception as exc:
            log.warning("could not close %s's outage conversations: %s", session_id, exc)

    def open(self, tenant_id: str, session_id: str) -> bool:
        """A reconnect: True when it cancelled a pending migration."""
        try:
            return self.active.open_session(tenant_id, session_id)
        except ActiveStoreUnavailable:
            return False  # nothing is pending in a store that is down
