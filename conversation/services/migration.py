"""Moving a closed conversation from Redis to PostgreSQL (the PersistenceMigrationWorker)."""
from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from enum import Enum

from conversation.domain.messages import ConversationStatus, now_timestamp
from conversation.domain.stats import summarise_conversation
from conversation.services.ports import (
    ArchiveWrites,
    ConversationRefused,
    MigrationLoad,
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
        """Consecutive requests in chunks of about equal messages, CHUNK_MESSAGES at most (one
        conversation at least), and as many as the threads that write them: a pass of 6,000
        messages made one chunk of 5,000 and one of 1,000, the second thread idle most of it."""
        if len(pending) == 1:
            return [pending]
        counts = self.active.message_counts([cid for cid, _ in pending])
        parts = max(math.ceil(sum(counts) / CHUNK_MESSAGES), min(PARALLEL_CHUNKS, len(pending)))
        target = sum(counts) / parts
        chunks: list[list[tuple[str, int | None]]] = [[]]
        size = 0
        for request, count in zip(pending, counts, strict=True):
            if chunks[-1] and size + count > target:
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
