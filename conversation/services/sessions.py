"""Session lifecycle: a close schedules the migration; a reconnect within the grace cancels it.

Cancellation is not `revoke`: the close bumps the session's generation and the migration task
carries it; a reconnect (or a new message) bumps it again, so the task, when it runs, finds its
generation stale and does nothing.
"""
from __future__ import annotations

import logging

from conversation.domain.messages import now_timestamp, parse_timestamp, utc_timestamp
from conversation.services.ports import ActiveStore, ClosedSession, Scheduler

log = logging.getLogger(__name__)


class SessionLifecycle:
    def __init__(self, active: ActiveStore, scheduler: Scheduler, grace_seconds: float) -> None:
        self.active = active
        self.scheduler = scheduler
        self.grace_seconds = grace_seconds

    def close(
        self, tenant_id: str, session_id: str, closed_at: str | None = None
    ) -> ClosedSession | None:
        moment = utc_timestamp(parse_timestamp(closed_at)) if closed_at else now_timestamp()
        closed = self.active.close_session(tenant_id, session_id, moment)
        if closed is None:
            log.info("session %s has no active conversation: nothing to migrate", session_id)
            return None
        self.scheduler.schedule_migration(
            closed.conversation_id, closed.generation, countdown=self.grace_seconds
        )
        return closed

    def open(self, tenant_id: str, session_id: str) -> bool:
        """A reconnect: True when it cancelled a pending migration."""
        return self.active.open_session(tenant_id, session_id)
