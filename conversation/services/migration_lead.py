"""The migration lead: closed sessions past their grace period, migrated together in batches;
and the sweeps that catch what a lost timer left behind."""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from conversation.domain.messages import now_timestamp, parse_timestamp
from conversation.services.migration import (
    ConversationMigrator,
    MigrationOutcome,
    MigrationStatus,
)
from conversation.services.ports import Locks, MigrationQueue

log = logging.getLogger(__name__)

# One migration lead at a time drains the conversations whose timers fired: a lead that dies
# holds it this long at most (a second lead meanwhile would only repeat idempotent work).
MIGRATION_LEAD = "migration-lead"
MIGRATION_LEAD_SECONDS = 120
# Conversations per pass of the lead (each pass is chunked by CHUNK_MESSAGES, and its chunks
# written PARALLEL_CHUNKS at a time: a pass's last round may leave a thread idle, so passes
# are large; 500 made a thousand closes two passes with a half-idle round each).
READY_BATCH = 1_000
# Before a pass that would not be full, the lead waits this long for the timers firing right
# now to join it (group commit: a burst's timers fire one after another, and a conversation
# costs ~1 ms in a batch of 100 against ~4 ms alone). Nothing next to a 30 s grace period.
GATHER_SECONDS = 0.05
# A pass of this many messages at least is worth its own cost (~15 ms: a dozen round trips, a
# transaction per chunk) even on a burst; below it, a timer of closes that were due already may
# wait for more of them (SessionLifecycle.fire_timer).
PASS_MESSAGES = 5_000


@dataclass(frozen=True)
class SweepReport:
    checked: int
    migrated: int
    idle: int = 0


class DueMigrations:
    """Closed sessions past their grace period, migrated together in batches.

    A timer that fires does not migrate its conversation alone: it marks it ready, and whoever
    holds the migration lead migrates everything ready, a batch per pass, until nothing is left.
    Timers of a burst of closes fire one after another; while the lead writes one batch, the
    next timers only mark theirs (a Redis write), so the burst costs a few batched
    transactions instead of one each. The `conversation.cleanup` beat job runs a time-based
    sweep with a margin: the safety net for timers lost with a killed worker (a broker would
    only redeliver them after its visibility timeout) and for a lead that died mid-batch.
    """

    def __init__(
        self,
        active: MigrationQueue,
        migrator: ConversationMigrator,
        grace_seconds: float,
        locks: Locks,
        idle_seconds: float = 24 * 3600,
        batch_size: int = 200,
        gather_seconds: float = GATHER_SECONDS,
        pass_messages: int = PASS_MESSAGES,
    ) -> None:
        self.active = active
        self.migrator = migrator
        self.grace_seconds = grace_seconds
        self.locks = locks
        # 0: the lead never waits, nor a timer for more of a burst (the unit tests' fakes).
        self.gather_seconds = gather_seconds
        self.pass_messages = pass_messages
        self.idle_seconds = idle_seconds
        self.batch_size = batch_size

    def due(self, before: float) -> list[tuple[str, int | None]]:
        session_ids = self.active.closed_sessions_before(before, self.batch_size)
        waiting: list[tuple[str, str, int]] = []
        for session_id, state in zip(
            session_ids, self.active.session_states(session_ids), strict=True
        ):
            if state is None or state.closed_at is None or state.conversation_id is None:
                # Reopened, or already released: nothing is waiting.
                self.active.forget_closed_session(session_id)
            else:
                waiting.append((session_id, state.conversation_id, state.generation))
        requests: list[tuple[str, int | None]] = []
        set_aside = self.active.quarantined([cid for _, cid, _ in waiting])
        for (session_id, conversation_id, generation), quarantined in zip(
            waiting, set_aside, strict=True
        ):
            if quarantined:
                # Not every sweep again: its replay (or a new close) tries it.
                self.active.forget_closed_session(session_id)
            else:
                requests.append((conversation_id, generation))
        return requests

    def migrate_when_ready(self, conversation_id: str, generation: int) -> list[MigrationOutcome]:
        """A timer fired: mark its conversation ready, and migrate everything ready if the lead
        is free. The outcomes of what this call migrated (none when another held the lead and
        takes this conversation along)."""
        self.mark_ready([(conversation_id, generation)])
        return self.lead()

    def mark_ready(self, requests: Sequence[tuple[str, int]]) -> None:
        """Conversations whose timer fired, each with the generation its close gave it."""
        self.active.mark_ready_many(requests)

    def worth_a_pass(self) -> bool:
        """Whether what is ready makes a pass worth its cost: a full batch, or PASS_MESSAGES
        messages (pass_messages). Always, when nothing waits (gather_seconds=0)."""
        if not self.gather_seconds:
            return True
        ready = self.active.ready_migrations(READY_BATCH)
        if len(ready) >= READY_BATCH:
            return True
        counts = self.migrator.active.message_counts([c for c, _ in ready])
        return sum(counts) >= self.pass_messages

    def lead(self, gather: bool = True) -> list[MigrationOutcome]:
        """Migrate everything ready, a batch per pass, if the lead is free; else leave it to
        the lead's holder. `gather`: wait a moment for the timers firing with this one."""
        outcomes: list[MigrationOutcome] = []
        while token := self.locks.acquire(MIGRATION_LEAD, MIGRATION_LEAD_SECONDS):
            try:
                while ready := self._gather(gather):
                    outcomes += self.migrator.migrate_many(ready)
                    # Busy ones stay closed: the cleanup sweep takes them once they settle.
                    self.active.forget_ready(ready)
            finally:
                self.locks.release(MIGRATION_LEAD, token)
            # A timer that marked after our last look found the lead taken and left its
            # conversation to us: look once more now that the lead is free.
            if not self.active.ready_migrations(1):
                break
        return outcomes

    def _gather(self, wait: bool = True) -> list[tuple[str, int]]:
        ready = self.active.ready_migrations(READY_BATCH)
        if wait and ready and len(ready) < READY_BATCH and self.gather_seconds:
            time.sleep(self.gather_seconds)
            ready = self.active.ready_migrations(READY_BATCH)
        return ready

    def sweep(self, now: str | None = None, margin_seconds: float | None = None) -> SweepReport:
        """The lost-timer sweep, then the idle one."""
        checked, migrated = self.sweep_lost_timers(now, margin_seconds)
        idle = self.migrate_idle(parse_timestamp(now or now_timestamp()).timestamp())
        return SweepReport(checked=checked, migrated=migrated, idle=idle)

    def sweep_lost_timers(
        self, now: str | None = None, margin_seconds: float | None = None
    ) -> tuple[int, int]:
        """Migrate what has been due for longer than a margin (one more grace period by
        default): its timer is lost. Racing a late timer is harmless: both are idempotent.
        How many were checked, and migrated."""
        moment = parse_timestamp(now or now_timestamp()).timestamp()
        if margin_seconds is None:
            margin_seconds = self.grace_seconds
        checked = migrated = 0
        while True:
            requests = self.due(moment - self.grace_seconds - margin_seconds)
            if not requests:
                break
            outcomes = self.migrator.migrate_many(requests)
            checked += len(requests)
            done = 0
            for outcome in outcomes:
                if outcome.status is MigrationStatus.MIGRATED:
                    done += 1
            migrated += done
            if done == 0:
                break  # only stale or busy ones left: the next sweep looks again
        if migrated:
            log.warning("cleanup migrated %d conversation(s) whose timer was lost", migrated)
        return checked, migrated

    def retry_quarantined(self, conversation_id: str) -> MigrationOutcome:
        """An operator fixed a quarantined conversation (or its cause) and replayed its dead
        letter: migrate it now, whatever its session does. Refused again, it is quarantined
        again, with a new record. A conversation not quarantined is left alone: the task is
        open to any producer, and a forced migration would take a live conversation (perhaps
        another tenant's) out of Redis. Releasing is the check (one HDEL), so two replays of
        the same letter migrate once."""
        if not self.active.release_quarantine(conversation_id):
            log.warning("migrate_quarantined: conversation %s is not quarantined; nothing done",
                        conversation_id)
            return MigrationOutcome(MigrationStatus.NOT_QUARANTINED, conversation_id)
        return self.migrator.migrate(conversation_id, None, force=True)

    def migrate_idle(self, now: float | None = None) -> int:
        """Conversations with no message for `idle_seconds` are persisted, session open or not
        (a websocket that never closed must not keep a conversation in memory for ever)."""
        if now is None:
            now = time.time()
        migrated = 0
        while idle := self.active.idle_conversations(now - self.idle_seconds, self.batch_size):
            set_aside = self.active.quarantined(idle)
            for conversation_id, quarantined in zip(idle, set_aside, strict=True):
                if quarantined:  # its replay (or a new close) brings it back
                    self.active.forget_activity(conversation_id)
            idle = [c for c, quarantined in zip(idle, set_aside, strict=True) if not quarantined]
            if not idle:
                continue
            outcomes = self.migrator.migrate_many([(c, None) for c in idle], force=True)
            for outcome in outcomes:
                if outcome.status is MigrationStatus.NOT_ACTIVE:
                    self.active.forget_activity(outcome.conversation_id)
            done = sum(1 for o in outcomes if o.status is MigrationStatus.MIGRATED)
            migrated += done
            if done == 0 and all(
                o.status in (MigrationStatus.BUSY, MigrationStatus.QUARANTINED) for o in outcomes
            ):
                break
        if migrated:
            log.info("cleanup migrated %d idle conversation(s)", migrated)
        return migrated
