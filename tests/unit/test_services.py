"""Save, session lifecycle and migration over the Redis store on fakeredis, and fakes.

tests/integration/test_tiers.py runs these same tests on real Redis and PostgreSQL.
"""
from __future__ import annotations

from dataclasses import replace

import fakeredis
import pytest

from conversation.adapters.redis import RedisActiveStore, RedisLocks
from conversation.domain.errors import ForeignConversation, ForeignSession
from conversation.domain.messages import NewMessage, Role
from conversation.domain.refusals import Refusal, RefusalReason
from conversation.domain.stats import summarise_conversation
from conversation.services.context import ContextBuilder
from conversation.services.migration import ConversationMigrator, MigrationStatus
from conversation.services.migration_lead import MIGRATION_LEAD, DueMigrations
from conversation.services.save import MessageSaver, SaveOutcome
from conversation.services.sessions import SessionLifecycle
from tests.fakes import FakeRepository, RecordingScheduler, TwoEncodingTokenizer, WordTokenizer


@pytest.fixture(params=["one_round_trip", "cluster_two_steps"])
def active(request: pytest.FixtureRequest) -> RedisActiveStore:
    store = RedisActiveStore(fakeredis.FakeRedis(), prefix="unit:")
    # Redis Cluster runs the session and conversation steps apart: test both paths.
    store.cluster = request.param == "cluster_two_steps"
    return store


@pytest.fixture
def repository() -> FakeRepository:
    return FakeRepository()


@pytest.fixture
def saver(active: RedisActiveStore, repository: FakeRepository) -> MessageSaver:
    return MessageSaver(active, repository, WordTokenizer())


def message(content: str = "hello there", **overrides: object) -> NewMessage:
    values: dict[str, object] = {
        "tenant_id": "acme", "session_id": "s-1", "agent_id": "support", "role": Role.USER,
        "content": content, "message_id": content.replace(" ", "-"),
    }
    values.update(overrides)
    return NewMessage(**values)  # type: ignore[arg-type]


def test_saving_creates_the_conversation_and_counts_tokens_once(saver, active) -> None:
    outcome = saver.save(message("one two three"))
    stored = active.messages(outcome.conversation_id)
    assert [m.content for m in stored] == ["one two three"]
    assert stored[0].tokens == 3 + 1 + 3
    conversation = active.get_conversation(outcome.conversation_id)
    assert conversation is not None and conversation.tenant_id == "acme"
    assert active.session_conversation("acme", "s-1") == outcome.conversation_id


def test_the_same_message_id_is_stored_once(saver, active) -> None:
    first = saver.save(message("hi", message_id="m-1"))
    again = saver.save(message("hi", message_id="m-1"))
    assert first.stored and not again.stored
    assert len(active.messages(first.conversation_id)) == 1


def test_a_late_arrival_is_placed_where_its_time_puts_it(saver, active) -> None:
    saver.save(message("a", created_at="2026-01-01T10:00:00Z"))
    saver.save(message("c", created_at="2026-01-01T10:00:02Z"))
    outcome = saver.save(message("b", created_at="2026-01-01T10:00:01Z"))
    saver.save(message("z", created_at="2026-01-01T09:00:00Z"))
    assert [m.content for m in active.messages(outcome.conversation_id)] == ["z", "a", "b", "c"]


def test_ties_keep_arrival_order(saver, active) -> None:
    for text in ("first", "second", "third"):
        outcome = saver.save(message(text, created_at="2026-01-01T10:00:00Z"))
    assert [m.content for m in active.messages(outcome.conversation_id)] == [
        "first", "second", "third"]


def test_another_tenants_session_is_refused(saver, active) -> None:
    outcome = saver.save(message("mine"))
    with pytest.raises(ForeignSession):
        saver.save(message("theirs", tenant_id="intruder"))
    assert [m.content for m in active.messages(outcome.conversation_id)] == ["mine"]


def test_another_tenants_conversation_is_refused(saver, active) -> None:
    outcome = saver.save(message("mine"))
    with pytest.raises(ForeignConversation):
        saver.save(message("theirs", tenant_id="intruder", session_id="s-9",
                           conversation_id=outcome.conversation_id))
    assert [m.content for m in active.messages(outcome.conversation_id)] == ["mine"]


WINDOWS = {"8k": ("token_buffer", 6000)}
EPOCH_10H = 1767261600  # 2026-01-01T10:00:00Z


def lifecycle(active: RedisActiveStore) -> tuple[SessionLifecycle, RecordingScheduler]:
    scheduler = RecordingScheduler()
    return SessionLifecycle(active, scheduler, grace_seconds=30), scheduler


def test_close_schedules_its_seconds_timer_at_the_end_of_the_grace(saver, active) -> None:
    saver.save(message())
    sessions, scheduler = lifecycle(active)
    closed = sessions.close_many([("acme", "s-1", "2026-01-01T10:00:00.250000Z")],
                                 now=EPOCH_10H + 0.5)[0]
    assert closed is not None
    # Its grace ends at 10:00:30.25: the timer of the second ending 10:00:31, 30.5 s away.
    assert scheduler.timers == [(EPOCH_10H + 31, 30.5)]


def test_migration_moves_everything_and_is_idempotent(saver, active, repository) -> None:
    outcome = saver.save(message("question", created_at="2026-01-01T10:00:00Z"))
    saver.save(message("answer", role=Role.ASSISTANT, created_at="2026-01-01T10:00:05Z"))
    sessions, scheduler = lifecycle(active)
    closed = sessions.close("acme", "s-1")
    migrator = ConversationMigrator(active, repository)
    first = migrator.migrate(outcome.conversation_id, closed.generation)
    second = migrator.migrate(outcome.conversation_id, closed.generation)
    assert first.status is MigrationStatus.MIGRATED and first.messages == 2
    assert second.status is MigrationStatus.NOT_ACTIVE
    assert [m.content for m in repository.messages(outcome.conversation_id)] == [
        "question", "answer"]
    persisted = repository.get_conversation(outcome.conversation_id)
    assert persisted is not None and persisted.status == "closed"
    assert active.get_conversation(outcome.conversation_id) is None
    assert active.messages(outcome.conversation_id) == []
    assert active.session_conversation("acme", "s-1") is None


def test_a_large_migration_goes_in_chunks_written_in_parallel(
    saver, active, repository, monkeypatch
) -> None:
    """Chunks of about CHUNK_MESSAGES messages (3 here), two written at a time:
    every conversation whole, each once, a stale one skipped, an unknown one reported."""
    import conversation.services.migration as migration

    monkeypatch.setattr(migration, "CHUNK_MESSAGES", 3)
    sessions, _ = lifecycle(active)
    requests, expected = [], {}
    for s in range(5):
        for i in range(s + 1):  # 1 to 5 messages: chunks of several and of one
            conversation_id = saver.save(message(f"s{s} m{i}", session_id=f"big-{s}",
                                                 message_id=f"big-{s}-{i}")).conversation_id
        closed = sessions.close("acme", f"big-{s}")
        requests.append((conversation_id, closed.generation))
        expected[conversation_id] = [f"s{s} m{i}" for i in range(s + 1)]
    stale_id, stale_generation = requests[1]
    requests[1] = (stale_id, stale_generation - 1)  # reopened since: must not move
    requests.append(("no-such-conversation", 1))
    outcomes = ConversationMigrator(active, repository).migrate_many(requests)
    statuses = [o.status for o in outcomes]
    assert statuses == [MigrationStatus.MIGRATED, MigrationStatus.STALE] + [
        MigrationStatus.MIGRATED] * 3 + [MigrationStatus.NOT_ACTIVE]
    for (conversation_id, _), outcome in zip(requests, outcomes, strict=False):
        if outcome.status is MigrationStatus.MIGRATED:
            assert [m.content for m in repository.messages(conversation_id)] == expected[
                conversation_id]
            assert active.get_conversation(conversation_id) is None
    assert repository.messages(stale_id) == [] and active.get_conversation(stale_id)


@pytest.mark.parametrize("reconnect", ["session_opened", "new_message"])
def test_a_reconnect_within_the_grace_cancels_the_migration(
    saver, active, repository, reconnect
) -> None:
    outcome = saver.save(message("before"))
    sessions, _ = lifecycle(active)
    closed = sessions.close("acme", "s-1")
    if reconnect == "session_opened":
        assert sessions.open("acme", "s-1") is True
    else:
        saver.save(message("after"))
    result = ConversationMigrator(active, repository).migrate(
        outcome.conversation_id, closed.generation)
    assert result.status is MigrationStatus.STALE
    assert repository.get_conversation(outcome.conversation_id) is None
    assert active.get_conversation(outcome.conversation_id) is not None


def test_a_message_after_migration_is_appended_in_postgres(saver, active, repository) -> None:
    outcome = saver.save(message("before"))
    sessions, _ = lifecycle(active)
    closed = sessions.close("acme", "s-1")
    ConversationMigrator(active, repository).migrate(outcome.conversation_id, closed.generation)
    late = saver.save(message("late", conversation_id=outcome.conversation_id))
    assert late.tier == "postgres" and late.conversation_id == outcome.conversation_id
    assert [m.content for m in repository.messages(outcome.conversation_id)] == ["before", "late"]
    # Without the conversation id, the closed session starts a new conversation.
    fresh = saver.save(message("new chat"))
    assert fresh.conversation_id != outcome.conversation_id and fresh.tier == "redis"


def test_a_save_redelivered_after_migration_is_stored_once(saver, active, repository) -> None:
    """The broker redelivers (or an operator replays) a save whose conversation has migrated
    since: the session has no conversation in Redis, and the message is found in PostgreSQL."""
    outcome = saver.save(message("once"))
    sessions, _ = lifecycle(active)
    closed = sessions.close("acme", "s-1")
    ConversationMigrator(active, repository).migrate(outcome.conversation_id, closed.generation)
    outcomes = saver.save_many([message("once"), message("new one")])
    assert outcomes[0] == SaveOutcome(outcome.conversation_id, "once", False, "postgres")
    assert outcomes[1].stored and outcomes[1].tier == "redis"
    assert [m.content for m in repository.messages(outcome.conversation_id)] == ["once"]
    assert [m.content for m in active.messages(outcomes[1].conversation_id)] == ["new one"]


def test_a_migration_is_refused_where_another_tenant_holds_the_id(
    saver, active, repository
) -> None:
    outcome = saver.save(message("mine"))
    theirs = replace(active.get_conversation(outcome.conversation_id), tenant_id="other")
    repository.store_conversation(theirs, [], summarise_conversation([]))
    sessions, _ = lifecycle(active)
    closed = sessions.close("acme", "s-1")
    refused = ConversationMigrator(active, repository).migrate(
        outcome.conversation_id, closed.generation)
    assert refused.status is MigrationStatus.QUARANTINED and "another tenant" in refused.reason
    assert [m.content for m in active.messages(outcome.conversation_id)] == ["mine"]
    assert repository.messages(outcome.conversation_id) == []


def test_the_cleanup_sweep_migrates_a_session_whose_timer_was_lost(saver, active, repository) -> None:
    outcome = saver.save(message("lost"))
    reopened = saver.save(message("kept", session_id="s-2"))
    sessions, scheduler = lifecycle(active)
    sessions.close("acme", "s-1", closed_at="2026-01-01T10:00:00Z")
    sessions.close("acme", "s-2", closed_at="2026-01-01T10:00:00Z")
    sessions.open("acme", "s-2")
    # The scheduled timers are "lost": nobody runs them. The sweep, an hour later:
    sweeper = due_migrations(active, repository)
    assert sweeper.sweep(now="2026-01-01T10:00:20Z").checked == 0  # still in its grace
    report = sweeper.sweep(now="2026-01-01T11:00:00Z")
    assert (report.checked, report.migrated) == (1, 1)
    assert [m.content for m in repository.messages(outcome.conversation_id)] == ["lost"]
    assert repository.get_conversation(reopened.conversation_id) is None
    assert sweeper.sweep(now="2026-01-01T12:00:00Z").checked == 0


def due_migrations(active: RedisActiveStore, repository: FakeRepository) -> DueMigrations:
    return DueMigrations(active, ConversationMigrator(active, repository), 30,
                         RedisLocks(active.client, prefix=active.keys.prefix))


def burst_of_closes(saver, active, count: int) -> list[tuple[str, int]]:
    sessions, _ = lifecycle(active)
    timers = []
    for s in range(count):
        saver.save(message(f"burst {s}", session_id=f"burst-{s}"))
        closed = sessions.close("acme", f"burst-{s}", closed_at="2026-01-01T10:00:00Z")
        timers.append((closed.conversation_id, closed.generation))
    return timers


def test_timers_that_fire_while_a_migration_runs_are_migrated_in_its_next_batch(
    saver, active, repository
) -> None:
    """A burst of closes: timers firing while another worker holds the migration lead only
    mark their conversation; the lead takes them all in one batch."""
    timers = burst_of_closes(saver, active, 5)
    due = due_migrations(active, repository)
    other_worker = due.locks.acquire(MIGRATION_LEAD, 60)
    for conversation_id, generation in timers[:4]:
        assert due.migrate_when_ready(conversation_id, generation) == []
        assert active.get_conversation(conversation_id) is not None
    due.locks.release(MIGRATION_LEAD, other_worker)
    outcomes = due.migrate_when_ready(timers[4][0], timers[4][1])
    assert sorted(o.conversation_id for o in outcomes) == sorted(t[0] for t in timers)
    assert {o.status for o in outcomes} == {MigrationStatus.MIGRATED}
    for conversation_id, _ in timers:
        assert [m.content for m in repository.messages(conversation_id)] == [
            f"burst {[t[0] for t in timers].index(conversation_id)}"]
        assert active.get_conversation(conversation_id) is None
    assert active.ready_migrations(10) == []
    # A timer delivered twice finds nothing left to do.
    again = due.migrate_when_ready(timers[0][0], timers[0][1])
    assert [o.status for o in again] == [MigrationStatus.NOT_ACTIVE]


def test_a_timer_marking_while_the_lead_is_released_is_not_stranded(
    saver, active, repository
) -> None:
    """The lead's holder looks again after releasing: a timer that marked its conversation
    just before, and found the lead still taken, is migrated by that holder."""
    first, late = burst_of_closes(saver, active, 2)
    due = due_migrations(active, repository)
    locks = due.locks

    class LateTimerAtRelease:
        def acquire(self, name: str, seconds: int) -> str | None:
            return locks.acquire(name, seconds)

        def release(self, name: str, token: str) -> None:
            if active.get_conversation(late[0]) is not None and not active.ready_migrations(1):
                # Another worker's timer: marks, finds the lead taken, leaves.
                assert DueMigrations(active, due.migrator, 30, locks).migrate_when_ready(
                    late[0], late[1]) == []
            locks.release(name, token)

    due.locks = LateTimerAtRelease()
    outcomes = due.migrate_when_ready(first[0], first[1])
    assert [(o.conversation_id, o.status) for o in outcomes] == [
        (first[0], MigrationStatus.MIGRATED), (late[0], MigrationStatus.MIGRATED)]
    assert active.get_conversation(late[0]) is None
    assert repository.get_conversation(late[0]) is not None


def test_conversations_left_to_a_lead_that_died_are_migrated_by_the_cleanup_sweep(
    saver, active, repository
) -> None:
    """A worker killed while leading keeps the lead until its lease expires: the timers that
    fire meanwhile only mark their conversations, and the cleanup sweep takes them."""
    sessions, _ = lifecycle(active)
    timers = []
    for s in range(3):
        saver.save(message(f"orphan {s}", session_id=f"orphan-{s}"))
        timers.append(sessions.close("acme", f"orphan-{s}", closed_at="2026-01-01T10:00:00Z"))
    due = due_migrations(active, repository)
    assert due.locks.acquire(MIGRATION_LEAD, 60)  # the dead worker's, never released
    for closed in timers:
        assert due.migrate_when_ready(closed.conversation_id, closed.generation) == []
    report = due.sweep(now="2026-01-01T10:05:00Z")
    assert (report.checked, report.migrated) == (3, 3)
    for s, closed in enumerate(timers):
        assert [m.content for m in repository.messages(closed.conversation_id)] == [
            f"orphan {s}"]
        assert active.get_conversation(closed.conversation_id) is None


def test_a_stale_timer_in_a_batch_migrates_nothing_and_is_forgotten(
    saver, active, repository
) -> None:
    timers = burst_of_closes(saver, active, 2)
    sessions, _ = lifecycle(active)
    assert sessions.open("acme", "burst-1") is True  # reconnected inside the grace
    due = due_migrations(active, repository)
    active.mark_ready(timers[1][0], timers[1][1])
    outcomes = due.migrate_when_ready(timers[0][0], timers[0][1])
    assert {(o.conversation_id, o.status) for o in outcomes} == {
        (timers[0][0], MigrationStatus.MIGRATED), (timers[1][0], MigrationStatus.STALE)}
    assert active.get_conversation(timers[1][0]) is not None
    assert repository.get_conversation(timers[1][0]) is None
    assert active.ready_migrations(10) == []


def test_a_message_written_before_the_close_but_delivered_after_goes_along(
    saver, active, repository
) -> None:
    """Workers run tasks concurrently: a save may run after the close that followed it."""
    outcome = saver.save(message("first", created_at="2026-01-01T10:00:00Z"))
    sessions, _ = lifecycle(active)
    closed = sessions.close("acme", "s-1", closed_at="2026-01-01T10:05:00Z")
    saver.save(message("second", created_at="2026-01-01T10:04:59Z"))
    result = ConversationMigrator(active, repository).migrate(
        outcome.conversation_id, closed.generation)
    assert result.status is MigrationStatus.MIGRATED
    assert [m.content for m in repository.messages(outcome.conversation_id)] == [
        "first", "second"]


def test_save_many_keeps_order_and_refuses_only_the_bad_message(saver, active) -> None:
    saver.save(message("owner's first", session_id="taken"))
    commands = [
        message("one", session_id="bulk"),
        message("intruder", session_id="taken", tenant_id="intruder"),
        message("two", session_id="bulk"),
        message("one", session_id="bulk"),  # a duplicate id inside the same batch
        message("three", session_id="bulk"),
    ]
    outcomes = saver.save_many(commands)
    assert outcomes[1].refusal == Refusal(RefusalReason.FOREIGN_SESSION,
                                          "session taken belongs to another tenant")
    assert isinstance(outcomes[1].refusal.error(), ForeignSession)
    assert [o.stored for o in outcomes if o.refusal is None] == [
        True, True, False, True]
    conversation_id = outcomes[0].conversation_id
    assert [m.content for m in active.messages(conversation_id)] == ["one", "two", "three"]


def test_a_context_in_another_encoding_counts_each_message_once_in_each_tier(
    active, repository
) -> None:
    """Counted at save time in the default encoding; a model of another encoding has each
    message counted on its first read and stored (in Redis, then carried to PostgreSQL with the
    conversation), never recounted."""
    tokenizer = TwoEncodingTokenizer()
    saver = MessageSaver(active, repository, tokenizer)
    texts = ["you are kind", "where is my parcel", "on its way", "thanks a lot"]
    roles = [Role.SYSTEM, Role.USER, Role.ASSISTANT, Role.USER]
    for text, role in zip(texts, roles, strict=True):
        outcome = saver.save(message(text, role=role, session_id="enc-1"))
    conversation_id = outcome.conversation_id
    context = ContextBuilder(active, repository, tokenizer, WINDOWS, {})

    def read() -> dict:
        return context.get_context(tenant_id="acme", conversation_id=conversation_id,
                                   model="letters-1", max_tokens=1000)

    first = read()
    assert sorted(tokenizer.letter_counts) == sorted(texts)  # each once, at first use
    # Letters, not words: 4 + letters of each message, + 3 for the reply.
    assert first["tokens"] == sum(4 + len(t.replace(" ", "")) for t in texts) + 3
    assert read() == first and len(tokenizer.letter_counts) == 4  # stored: not recounted

    sessions, _ = lifecycle(active)
    closed = sessions.close("acme", "enc-1")
    migrated = ConversationMigrator(active, repository).migrate(conversation_id, closed.generation)
    assert migrated.status is MigrationStatus.MIGRATED
    assert read() == first and len(tokenizer.letter_counts) == 4  # carried along


def test_tool_calls_are_counted_in_another_encoding_once_in_each_tier(active, repository) -> None:
    """The per-encoding recount reads a message's tool calls and call id too (the contract's
    count), in Redis and once migrated."""
    tokenizer = TwoEncodingTokenizer()
    saver = MessageSaver(active, repository, tokenizer)
    calls = [{"id": "c1", "type": "function",
              "function": {"name": "lookup", "arguments": '{"order": 4521}'}}]
    saver.save(message("where is 4521", session_id="enc-t"))
    saver.save(message("", role=Role.ASSISTANT, session_id="enc-t", message_id="call",
                       tool_calls=calls))
    outcome = saver.save(message("shipped", role=Role.TOOL, session_id="enc-t",
                                 tool_call_id="c1"))
    conversation_id = outcome.conversation_id
    context = ContextBuilder(active, repository, tokenizer, WINDOWS, {})

    def read() -> dict:
        return context.get_context(tenant_id="acme", conversation_id=conversation_id,
                                   model="letters-1", max_tokens=1000)

    first = read()
    letters = len("whereis4521") + (3 + 2 + 1 + len('{"order":4521}')) + (
        len("shipped") + len("c1"))
    assert first["tokens"] == 3 * 4 + letters + 3
    assert first["messages"][1]["tool_calls"] == calls
    assert first["messages"][2] == {"role": "tool", "content": "shipped", "tool_call_id": "c1"}
    assert len(tokenizer.letter_counts) == 3

    sessions, _ = lifecycle(active)
    closed = sessions.close("acme", "enc-t")
    migrated = ConversationMigrator(active, repository).migrate(conversation_id, closed.generation)
    assert migrated.status is MigrationStatus.MIGRATED
    assert read() == first and len(tokenizer.letter_counts) == 3  # carried along


def test_a_batch_spanning_many_sessions_keeps_every_guarantee(saver, active) -> None:
    """What a gateway batching its traffic sends: one message (or a few) from each of many
    sessions, some new, one another tenant's, an explicit conversation, a duplicate. On
    standalone Redis the batch is one script call; each item keeps its own outcome, in order."""
    owner = saver.save(message("owner's", session_id="g-taken"))
    existing = saver.save(message("earlier", session_id="g-0", created_at="2026-01-01T09:00:00Z"))
    commands = []
    for s in range(30):
        commands.append(message(f"s{s} first", session_id=f"g-{s}",
                                created_at="2026-01-01T10:00:01Z"))
    commands.append(message("intruder", session_id="g-taken", tenant_id="intruder"))
    commands.append(message("s3 first", session_id="g-3"))  # a duplicate id in the batch
    commands.append(message("s3 earlier", session_id="g-3", created_at="2026-01-01T10:00:00Z"))
    commands.append(message("explicit", session_id="g-x",
                            conversation_id=existing.conversation_id))
    calls: list[str] = []
    real_execute = active.client.pipeline

    def counting_pipeline(*args: object, **kwargs: object):  # noqa: ANN202
        pipe = real_execute(*args, **kwargs)
        evalsha = pipe.evalsha

        def counted(*a: object, **k: object) -> object:
            calls.append("evalsha")
            return evalsha(*a, **k)

        pipe.evalsha = counted
        return pipe

    # A script call is sent alone when it is the only one (conversation.adapters.redis.calls),
    # else in a pipeline: both are counted.
    real_evalsha = active.client.evalsha

    def counted_alone(*a: object, **k: object) -> object:
        calls.append("evalsha")
        return real_evalsha(*a, **k)

    active.client.pipeline = counting_pipeline  # type: ignore[method-assign]
    active.client.evalsha = counted_alone  # type: ignore[method-assign]
    try:
        outcomes = saver.save_many(commands)
    finally:
        active.client.pipeline = real_execute  # type: ignore[method-assign]
        del active.client.evalsha
    if not active.cluster:
        # One call for the batch, one more for the sessions it makes new conversations for
        # (confirmed once PostgreSQL claimed them), and one for the explicit conversation
        # named from a session new to Redis (appended once PostgreSQL was asked about it).
        assert len(calls) == 3
    assert outcomes[30].refusal is not None
    assert outcomes[30].refusal.reason is RefusalReason.FOREIGN_SESSION
    assert [o.stored for o in outcomes[:30]] == [True] * 30
    assert outcomes[31].stored is False and outcomes[32].stored is True
    assert outcomes[33].conversation_id == existing.conversation_id
    assert [m.content for m in active.messages(existing.conversation_id)] == [
        "earlier", "s0 first", "explicit"]
    assert [m.content for m in active.messages(outcomes[3].conversation_id)] == [
        "s3 earlier", "s3 first"]
    assert [m.content for m in active.messages(owner.conversation_id)] == ["owner's"]
    for s in range(1, 30):
        assert active.session_conversation("acme", f"g-{s}") == outcomes[s].conversation_id
