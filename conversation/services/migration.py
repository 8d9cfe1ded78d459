"""Moving a closed conversation from Redis to PostgreSQL (the PersistenceMigrationWorker)."""
from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import Enum

from conversation.domain.messages import ConversationStatus, now_timestamp, parse_timestamp
from conversation.domain.stats import summarise_conversation
from conversation.services.ports import (
    ArchiveWrites,
    ConversationRefused,
    Locks,
    MigrationLoad,
    MigrationQueue,
    MigrationSource,
)

log = logging.getLogger(__name__)

# Messages keep arriving while a migration runs only in a race with a reconnect; a few passes
# settle it, each one idempotent.
MAX_PASSES = 5
# Messages per transaction when a migration takes many conversations (a conversation is never
# split): big enough for COPY's speed, small enough that a batch makes several chunks, written
# PARALLEL_CHUNKS at a time so that one thread's Python work overlaps PostgreSQL's on another's.
CHUNK_MESSAGES = 5_000
PARALLEL_CHUNKS = 2
# One migration lead at a time drains the conversations whose timers fired: a lead that dies
# holds it this long at most (a second lead meanwhile would only repeat idempotent work).
MIGRATION_LEAD = "migration-lead"
MIGRATION_LEAD_SECONDS = 120
# Conversations per pass of the lead (each pass is chunked by CHUNK_MESSAGES).
READY_BATCH = 500
# Before a pass that would not be full, the lead waits this long for the timers firing right
# now to join it (group commit: a burst's timers fire one after another, and a conversation
# costs ~1 ms in a batch of 100 against ~4 ms alone). Nothing next to a 30 s grace period.
GATHER_SECONDS = 0.05


class MigrationStatus(Enum):
    MIGRATED = "migrated"
    NOT_ACTIVE = "not_active"  # already migrated, or never existed: nothing to do
    STALE = "stale"  # the session reconnected after the close that scheduled this
    BUSY = "busy"  # messages kept arriving; try again later
    # Refused by a store (bad data, or PostgreSQL holds the id for another tenant): set
    # aside, kept in Redis, nothing merged (see `reason`).
    QUARANTINED = "quarantined"
    # migrate_quarantined named a conversation that is not quarantined (a second replay, or
    # any producer naming a live one): nothing done.
    NOT_QUARANTINED = "not_quarantined"


@dataclass(frozen=True)
class MigrationOutcome:
    status: MigrationStatus
    conversation_id: str
    messages: int = 0
    closed_at: str | None = None
    reason: str | None = None


class ConversationMigrator:
    def __init__(
        self,
        active: MigrationSource,
        repository: ArchiveWrites,
        on_migrated: Callable[[MigrationOutcome], None] = lambda outcome: None,
        on_quarantined: Callable[[MigrationOutcome], None] = lambda outcome: None,
    ) -> None:
        self.on_migrated = on_migrated  # metrics: every migration, whichever path asked for it
        # The quarantine record (a dead letter) and its metric.
        self.on_quarantined = on_quarantined
        self.active = active
        self.repository = repository

    def migrate(
        self, conversation_id: str, generation: int | None, *, force: bool = False
    ) -> MigrationOutcome:
        """Migrate if the session is still closed at `generation` (or unconditionally: force)."""
        return self.migrate_many([(conversation_id, generation)], force=force)[0]

    def migrate_many(
        self, requests: Sequence[tuple[str, int | None]], *, force: bool = False
    ) -> list[MigrationOutcome]:
        """Migrate many conversations, each checked against its generation: a PostgreSQL
        transaction per chunk of about CHUNK_MESSAGES messages, PARALLEL_CHUNKS of them at a
        time."""
        outcomes: dict[str, MigrationOutcome] = {}
        pending = list(requests)
        for _ in range(MAX_PASSES):
            if not pending:
                break
            retry = self._pass(pending, force, outcomes)
            if retry:
                # The messages that arrived bumped nothing we check again: migrate as found.
                force = True
            pending = retry
        for conversation_id, _ in pending:
            outcomes[conversation_id] = MigrationOutcome(MigrationStatus.BUSY, conversation_id)
        migrated = [o for o in outcomes.values() if o.status is MigrationStatus.MIGRATED]
        for outcome in migrated:
            self.on_migrated(outcome)
        if migrated:
            log.info(
                "migrated %d conversation(s), %d messages",
                len(migrated),
                sum(o.messages for o in migrated),
            )
        return [outcomes[conversation_id] for conversation_id, _ in requests]

    def _pass(
        self,
        pending: list[tuple[str, int | None]],
        force: bool,
        outcomes: dict[str, MigrationOutcome],
    ) -> list[tuple[str, int | None]]:
        chunks = self._chunks(pending)

        def migrate_chunk(chunk: list[tuple[str, int | None]]) -> list[tuple[str, int | None]]:
            return self._migrate_isolating(chunk, force, outcomes)

        if len(chunks) == 1:
            return migrate_chunk(chunks[0])
        # Chunks in parallel, a connection and a transaction each: while one thread decodes
        # what Redis sent or formats COPY rows, PostgreSQL digests another's (its side is
        # half of a chunk's time, on the other core).
        with ThreadPoolExecutor(max_workers=PARALLEL_CHUNKS,
                                thread_name_prefix="migration") as pool:
            return [request for retry in pool.map(migrate_chunk, chunks) for request in retry]

    def _chunks(
        self, pending: list[tuple[str, int | None]]
    ) -> list[list[tuple[str, int | None]]]:
        """Consecutive requests of about CHUNK_MESSAGES messages each (one at least)."""
        if len(pending) == 1:
            return [pending]
        counts = self.active.message_counts([cid for cid, _ in pending])
        chunks: list[list[tuple[str, int | None]]] = [[]]
        size = 0
        for request, count in zip(pending, counts, strict=True):
            if chunks[-1] and size + count > CHUNK_MESSAGES:
                chunks.append([])
                size = 0
            chunks[-1].append(request)
            size += count
        return chunks

    def _migrate_isolating(
        self,
        chunk: list[tuple[str, int | None]],
        force: bool,
        outcomes: dict[str, MigrationOutcome],
    ) -> list[tuple[str, int | None]]:
        """One chunk in one transaction. When a store refuses its data, each half is tried on
        its own, down to the refused conversations alone: those are quarantined, the others
        migrate (a poison conversation costs its chunk about 2 log2(n) transactions more; a
        chunk that goes through costs nothing more). Anything else (a server down) raises:
        the task retries the whole chunk, as before."""
        try:
            loads = self.active.load_for_migration([cid for cid, _ in chunk])
            return self._migrate_chunk(chunk, loads, force, outcomes)
        except (ConversationRefused, ValueError) as error:  # ValueError: a date that won't parse
            if len(chunk) > 1:
                middle = len(chunk) // 2
                return (self._migrate_isolating(chunk[:middle], force, outcomes)
                        + self._migrate_isolating(chunk[middle:], force, outcomes))
            self._quarantine(chunk[0][0], str(error) or type(error).__name__, outcomes)
            return []

    def _quarantine(
        self, conversation_id: str, reason: str, outcomes: dict[str, MigrationOutcome]
    ) -> None:
        """Set aside: kept in Redis as it is (nothing lost), skipped by the sweeps until an
        operator replays its dead letter, recorded with the reason. The record first, then the
        mark: a mark without its record would be skipped for ever with nothing in `dlq list`.
        When the record fails, this raises and the conversation stays due (the task retries);
        a crash between the two leaves it due too: a later pass records it again (one more
        dead letter for it, never none)."""
        log.error("migration of %s refused: quarantined, kept in Redis (%s)",
                  conversation_id, reason)
        outcome = MigrationOutcome(MigrationStatus.QUARANTINED, conversation_id, reason=reason)
        self.on_quarantined(outcome)
        self.active.quarantine(conversation_id, reason)
        outcomes[conversation_id] = outcome

    def _migrate_chunk(
        self,
        chunk: list[tuple[str, int | None]],
        loads: list[MigrationLoad | None],
        force: bool,
        outcomes: dict[str, MigrationOutcome],
    ) -> list[tuple[str, int | None]]:
        """Store one chunk in one transaction; the conversations to try again."""
        batch = []
        counts: list[tuple[str, str, dict[str, int]]] = []
        for (conversation_id, generation), load in zip(chunk, loads, strict=True):
            if load is None:
                # Not active: never was, or an earlier pass (or run) migrated it.
                outcomes.setdefault(
                    conversation_id,
                    MigrationOutcome(MigrationStatus.NOT_ACTIVE, conversation_id),
                )
                continue
            state = load.session
            if not force and (
                state is None or state.generation != generation or state.closed_at is None
            ):
                outcomes[conversation_id] = MigrationOutcome(MigrationStatus.STALE, conversation_id)
                continue
            closed = replace(
                load.conversation,
                status=ConversationStatus.CLOSED,
                closed_at=(state.closed_at if state else None) or now_timestamp(),
                summary=load.summary.text if load.summary else None,
                summary_through=load.summary.through if load.summary else None,
            )
            batch.append((closed, load.messages, load.session))
            counts.extend((closed.id, encoding, by_id)
                          for encoding, by_id in load.token_counts.items())
        if not batch:
            return []
        conflicts = self.repository.store_conversations(
            [(c, m, summarise_conversation(m, c.closed_at)) for c, m, _ in batch]
        )
        if conflicts:
            # Another tenant's conversation under the same id: never merged, set aside.
            refused = {conflict.conversation_id: conflict.reason for conflict in conflicts}
            for conversation_id, reason in refused.items():
                self._quarantine(conversation_id, reason, outcomes)
            batch = [item for item in batch if item[0].id not in refused]
            counts = [item for item in counts if item[0] not in refused]
        # Costs counted in other encodings go along (rare: a model of another encoding read
        # the conversation); kept apart from the batch's transaction, they are derived data.
        for conversation_id, encoding, by_id in counts:
            self.repository.store_token_counts(conversation_id, encoding, by_id)
        # Redis keys go only after the commit, and only where no message came in meanwhile;
        # those that changed go round again (every step is idempotent).
        finished = self.active.finish_migrations([(c, len(m)) for c, m, _ in batch])
        retry = []
        released = []
        for (conversation, history, state), done in zip(batch, finished, strict=True):
            if not done:
                retry.append((conversation.id, state.generation if state else None))
                continue
            if state is not None:
                released.append((conversation.session_id, conversation.id, state.generation))
            outcomes[conversation.id] = MigrationOutcome(
                MigrationStatus.MIGRATED, conversation.id, len(history), conversation.closed_at
            )
        self.active.release_sessions(released)
        return retry


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
    ) -> None:
        self.active = active
        self.migrator = migrator
        self.grace_seconds = grace_seconds
        self.locks = locks
        self.gather_seconds = gather_seconds
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
