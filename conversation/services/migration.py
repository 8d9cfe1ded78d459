"""Moving a closed conversation from Redis to PostgreSQL (the PersistenceMigrationWorker)."""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from enum import Enum

from conversation.domain.messages import ConversationStatus, now_timestamp, parse_timestamp
from conversation.domain.stats import summarise_conversation
from conversation.services.ports import ActiveStore, Repository

log = logging.getLogger(__name__)

# Messages keep arriving while a migration runs only in a race with a reconnect; a few passes
# settle it, each one idempotent.
MAX_PASSES = 5


class MigrationStatus(Enum):
    MIGRATED = "migrated"
    NOT_ACTIVE = "not_active"  # already migrated, or never existed: nothing to do
    STALE = "stale"  # the session reconnected after the close that scheduled this
    BUSY = "busy"  # messages kept arriving; try again later


@dataclass(frozen=True)
class MigrationOutcome:
    status: MigrationStatus
    conversation_id: str
    messages: int = 0


class ConversationMigrator:
    def __init__(self, active: ActiveStore, repository: Repository) -> None:
        self.active = active
        self.repository = repository

    def migrate(
        self, conversation_id: str, generation: int | None, *, force: bool = False
    ) -> MigrationOutcome:
        """Migrate if the session is still closed at `generation` (or unconditionally: force)."""
        conversation = self.active.get_conversation(conversation_id)
        if conversation is None:
            return MigrationOutcome(MigrationStatus.NOT_ACTIVE, conversation_id)
        state = self.active.session_state(conversation.session_id)
        if not force and (
            state is None or state.generation != generation or state.closed_at is None
        ):
            return MigrationOutcome(MigrationStatus.STALE, conversation_id)
        closed_at = (state.closed_at if state else None) or now_timestamp()
        for _ in range(MAX_PASSES):
            summary = self.active.summary(conversation_id)
            closed = replace(
                conversation,
                status=ConversationStatus.CLOSED,
                closed_at=closed_at,
                summary=summary.text if summary else None,
                summary_through=summary.through if summary else None,
            )
            messages = self.active.messages(conversation_id)
            self.repository.store_conversation(closed, messages, summarise_conversation(messages))
            # Redis keys go only after the commit, and only if no message came in meanwhile.
            if self.active.finish_migration(conversation, len(messages)):
                if state is not None:
                    self.active.release_session(
                        conversation.session_id, conversation_id, state.generation
                    )
                log.info("migrated conversation %s (%d messages)", conversation_id, len(messages))
                return MigrationOutcome(MigrationStatus.MIGRATED, conversation_id, len(messages))
        return MigrationOutcome(MigrationStatus.BUSY, conversation_id)


@dataclass(frozen=True)
class SweepReport:
    checked: int
    migrated: int


class LostTimerSweeper:
    """The safety net for migration timers lost with a killed worker (`conversation.cleanup`).

    A countdown task held by a dying worker comes back only after the broker's visibility
    timeout; this sweep migrates every session closed longer than the grace period (plus a
    margin, so it does not race the timer it backs up) that is still waiting.
    """

    def __init__(
        self, active: ActiveStore, migrator: ConversationMigrator, grace_seconds: float
    ) -> None:
        self.active = active
        self.migrator = migrator
        self.grace_seconds = grace_seconds

    def sweep(self, now: str | None = None, margin_seconds: float = 30.0, limit: int = 500) -> SweepReport:
        moment = parse_timestamp(now or now_timestamp()).timestamp()
        due = self.active.closed_sessions_before(
            moment - self.grace_seconds - margin_seconds, limit
        )
        migrated = 0
        for session_id in due:
            state = self.active.session_state(session_id)
            if state is None or state.closed_at is None or state.conversation_id is None:
                # Reopened, or already released: nothing is waiting.
                self.active.forget_closed_session(session_id)
                continue
            outcome = self.migrator.migrate(state.conversation_id, state.generation)
            if outcome.status is MigrationStatus.MIGRATED:
                migrated += 1
            elif outcome.status is not MigrationStatus.BUSY:
                self.active.forget_closed_session(session_id)
        if migrated:
            log.warning("cleanup migrated %d conversation(s) whose timer was lost", migrated)
        return SweepReport(checked=len(due), migrated=migrated)
