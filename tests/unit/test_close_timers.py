"""Closes share one timer a second (CONTRACT.md section 1): what could go wrong with it, over
the Redis store on fakeredis (both the standalone and the cluster paths), and
`conversation.sessions_closed` dead-lettering a bad item alone."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import fakeredis
import pytest

from config.settings import Settings
from conversation import bootstrap
from conversation.adapters.redis import RedisActiveStore, RedisLocks
from conversation.domain.errors import ForeignSession
from conversation.domain.refusals import Refusal, RefusalReason
from conversation.domain.messages import NewMessage, Role
from conversation.services.migration import ConversationMigrator, MigrationStatus
from conversation.services.migration_lead import DueMigrations
from conversation.services.save import MessageSaver
from conversation.services.sessions import (
    BURST_POLL_SECONDS,
    DUE_GATHER_SECONDS,
    SessionLifecycle,
)
from tasks.conversation_tasks import sessions_closed
from tests.fakes import FakeRepository, RecordingScheduler, WordTokenizer
from tests.unit.test_save_tasks import FakeDeadLetters

GRACE = 30
T0 = 1767261600  # 2026-01-01T10:00:00Z
SECOND = T0 + GRACE + 1  # the timer of the closes made within 10:00:00


@dataclass
class Service:
    active: RedisActiveStore
    repository: FakeRepository
    scheduler: RecordingScheduler
    sessions: SessionLifecycle
    saver: MessageSaver

    def chat(self, session: str, text: str = "hello", tenant: str = "acme") -> str:
        return self.saver.save(NewMessage(
            tenant_id=tenant, session_id=session, agent_id="bot", role=Role.USER,
            content=text, message_id=f"{session}-{text.replace(' ', '-')}",
        )).conversation_id

    def in_redis(self, conversation_id: str) -> bool:
        return self.active.get_conversation(conversation_id) is not None

    def in_postgres(self, conversation_id: str) -> bool:
        return self.repository.get_conversation(conversation_id) is not None


@pytest.fixture(params=["standalone", "cluster_paths"])
def service(request: pytest.FixtureRequest) -> Service:
    active = RedisActiveStore(fakeredis.FakeRedis(), prefix="unit:")
    active.cluster = request.param == "cluster_paths"
    repository = FakeRepository()
    scheduler = RecordingScheduler()
    due = DueMigrations(active, ConversationMigrator(active, repository), GRACE,
                        RedisLocks(active.client, prefix="unit:"), gather_seconds=0)
    sessions = SessionLifecycle(active, scheduler, GRACE, repository, migrations=due)
    return Service(active, repository, scheduler, sessions,
                   MessageSaver(active, repository, WordTokenizer()))


def at(seconds: float) -> str:
    """10:00:00 plus `seconds`, as a close time."""
    whole, micro = divmod(round(seconds * 1_000_000), 1_000_000)
    return f"2026-01-01T10:{whole // 60:02d}:{whole % 60:02d}.{micro:06d}Z"


def test_closes_within_one_second_share_one_timer(service: Service) -> None:
    ids = [service.chat(f"s{i}") for i in range(5)]
    service.sessions.close_many([("acme", f"s{i}", at(0.1 + i * 0.2)) for i in range(4)],
                                now=T0 + 1)
    service.sessions.close("acme", "s4", at(1.1))  # the next second: a timer of its own
    assert [second for second, _ in service.scheduler.timers] == [SECOND, SECOND + 1]
    outcomes = service.sessions.fire_timer(SECOND, now=SECOND)
    assert sorted(o.conversation_id for o in outcomes) == sorted(ids[:4])
    assert {o.status for o in outcomes} == {MigrationStatus.MIGRATED}
    assert service.in_redis(ids[4]) and not service.in_postgres(ids[4])


def test_a_timer_that_fires_early_moves_only_the_sessions_whose_grace_has_passed(
    service: Service
) -> None:
    """Another host's clock fires the timer at 10:00:30.5: a session closed at 10:00:00.9 has
    0.4 s of grace left. It stays, and its second's timer is set again for it."""
    early, late = service.chat("early"), service.chat("late")
    service.sessions.close("acme", "early", at(0.1))
    service.sessions.close("acme", "late", at(0.9))
    outcomes = service.sessions.fire_timer(SECOND, now=T0 + 30.5)
    assert [(o.conversation_id, o.status) for o in outcomes] == [
        (early, MigrationStatus.MIGRATED)]
    assert service.in_redis(late) and not service.in_postgres(late)
    (second, countdown) = service.scheduler.timers[-1]
    assert second == SECOND and countdown == pytest.approx(0.4)
    # The timer set again fires on time: the session moves then.
    outcomes = service.sessions.fire_timer(SECOND, now=T0 + 31)
    assert [(o.conversation_id, o.status) for o in outcomes] == [(late, MigrationStatus.MIGRATED)]
    assert not service.in_redis(late)


def test_a_timer_run_twice_or_late_changes_nothing_more(service: Service) -> None:
    conversation_id = service.chat("twice", "only once")
    service.sessions.close("acme", "twice", at(0.5))
    first = service.sessions.fire_timer(SECOND, now=SECOND)
    assert [o.status for o in first] == [MigrationStatus.MIGRATED]
    assert service.sessions.fire_timer(SECOND, now=SECOND + 5) == []  # a redelivery
    assert [m.content for m in service.repository.messages(conversation_id)] == ["only once"]
    assert service.active.ready_migrations(10) == []


def test_a_timer_redelivered_after_dying_mid_hand_over_migrates_once(service: Service) -> None:
    """The first run marked the bucket's sessions ready and died before it could forget them:
    the broker runs it again, which marks them again and migrates each once."""
    conversation_id = service.chat("crash", "kept whole")
    service.sessions.close("acme", "crash", at(0.5))
    forget = service.active.forget_close_timer_members
    lead = service.sessions.migrations.lead  # type: ignore[union-attr]

    def die(*args: object) -> None:
        raise SystemExit("worker killed")

    service.active.forget_close_timer_members = die  # type: ignore[method-assign]
    with pytest.raises(SystemExit):
        service.sessions.fire_timer(SECOND, now=SECOND)
    service.active.forget_close_timer_members = forget  # type: ignore[method-assign]
    assert service.in_redis(conversation_id)
    outcomes = service.sessions.fire_timer(SECOND, now=SECOND + 1)
    assert [o.status for o in outcomes] == [MigrationStatus.MIGRATED]
    assert lead() == []
    assert [m.content for m in service.repository.messages(conversation_id)] == ["kept whole"]


def test_a_late_timer_after_the_sweep_took_its_session_finds_nothing_to_do(
    service: Service
) -> None:
    conversation_id = service.chat("swept")
    service.sessions.close("acme", "swept", at(0.5))
    due = service.sessions.migrations
    assert due is not None
    report = due.sweep(now="2026-01-01T11:00:00Z")
    assert (report.checked, report.migrated) == (1, 1)
    outcomes = service.sessions.fire_timer(SECOND, now=T0 + 3601)
    assert [o.status for o in outcomes] == [MigrationStatus.NOT_ACTIVE]
    assert len(service.repository.messages(conversation_id)) == 1


def test_a_session_reopened_while_its_seconds_timer_runs_stays_active(service: Service) -> None:
    """The timer has read its bucket when the user of one of its sessions reconnects: that
    session's generation moved on, so it stays in Redis; the others migrate."""
    gone, back = service.chat("gone"), service.chat("back")
    service.sessions.close_many([("acme", "gone", at(0.2)), ("acme", "back", at(0.4))])
    take = service.active.take_close_timer

    def take_then_reconnect(second: int) -> list[str]:
        members = take(second)
        assert service.sessions.open("acme", "back") is True
        return members

    service.active.take_close_timer = take_then_reconnect  # type: ignore[method-assign]
    outcomes = service.sessions.fire_timer(SECOND, now=SECOND)
    assert {(o.conversation_id, o.status) for o in outcomes} == {
        (gone, MigrationStatus.MIGRATED), (back, MigrationStatus.STALE)}
    assert service.in_redis(back) and not service.in_postgres(back)
    assert service.active.session_conversation("acme", "back") == back
    assert service.active.ready_migrations(10) == []


def test_a_close_after_its_seconds_timer_looked_gets_a_timer_of_its_own(
    service: Service
) -> None:
    first, second = service.chat("first"), service.chat("second")
    service.sessions.close("acme", "first", at(0.2))
    service.sessions.fire_timer(SECOND, now=SECOND)
    # A close published late (its closed_at in that same second) arrives after the timer ran.
    service.sessions.close("acme", "second", at(0.7))
    assert [s for s, _ in service.scheduler.timers] == [SECOND, SECOND]
    outcomes = service.sessions.fire_timer(SECOND, now=SECOND + 1)
    assert [(o.conversation_id, o.status) for o in outcomes] == [
        (second, MigrationStatus.MIGRATED)]
    assert service.in_postgres(first)


def test_close_many_refuses_another_tenants_session_alone(service: Service) -> None:
    mine = service.chat("mine")
    service.chat("theirs", tenant="other")
    results = service.sessions.close_many([("acme", "mine", at(0.1)), ("acme", "theirs", at(0.1)),
                                           ("acme", "never-used", at(0.1))])
    assert results[0] is not None and results[0].conversation_id == mine
    assert isinstance(results[1], Refusal) and results[2] is None
    assert results[1].reason is RefusalReason.FOREIGN_SESSION
    assert isinstance(results[1].error(), ForeignSession)
    assert [o.conversation_id for o in service.sessions.fire_timer(SECOND, now=SECOND)] == [mine]


@dataclass
class FakeContainer:
    sessions: SessionLifecycle
    settings: Settings = field(default_factory=Settings)
    dead_letters: FakeDeadLetters = field(default_factory=FakeDeadLetters)

    def close(self) -> None:
        pass


@pytest.fixture
def tasks(service: Service) -> Iterator[FakeContainer]:
    container = FakeContainer(service.sessions)
    bootstrap.reset_container(container)  # type: ignore[arg-type]
    yield container
    bootstrap.reset_container(None)


def test_sessions_closed_dead_letters_a_bad_item_alone(
    service: Service, tasks: FakeContainer
) -> None:
    ids = [service.chat(f"ok-{i}") for i in range(3)]
    service.chat("foreign", tenant="other")
    batch = [
        {"tenant_id": "acme", "session_id": "ok-0"},
        {"tenant_id": "acme", "session_id": "bad:id"},  # invalid: refused by the schema
        {"tenant_id": "acme", "session_id": "ok-1", "closed_at": "not a time"},
        "not an object",
        {"tenant_id": "acme", "session_id": "foreign"},  # another tenant's session
        {"tenant_id": "acme", "session_id": "ok-2", "closed_at": "2026-01-01T10:00:00.5Z"},
    ]
    result = sessions_closed.apply(kwargs={"sessions": batch}, task_id="t-1").get()
    assert result == {"closed": 2, "rejected": 4}
    letters = tasks.dead_letters.letters
    assert [letter.kwargs for letter in letters] == [
        {"sessions": [batch[i]]} for i in (1, 2, 3, 4)]
    assert "session_id" in str(letters[0].reasons) and "closed_at" in str(letters[1].reasons)
    assert "another tenant" in letters[3].error
    assert service.active.session_state("ok-0").closed_at is not None
    assert service.active.session_state("ok-1").closed_at is None
    outcomes = service.sessions.fire_timer(SECOND, now=SECOND)
    assert [o.conversation_id for o in outcomes] == [ids[2]]


def test_sessions_closed_refuses_an_empty_or_oversized_batch_whole(tasks: FakeContainer) -> None:
    sessions_closed.apply(kwargs={"sessions": []}, task_id="t-2").get(propagate=False)
    sessions_closed.apply(kwargs={"sessions": [{"tenant_id": "a", "session_id": "b"}] * 1001},
                          task_id="t-3").get(propagate=False)
    assert len(tasks.dead_letters.letters) == 2
    assert all("sessions" in str(letter.reasons) for letter in tasks.dead_letters.letters)


def test_a_close_whose_grace_has_already_passed_fires_its_timer_almost_at_once(
    service: Service
) -> None:
    """A close delivered late (its closed_at more than the grace ago): nothing to wait for but
    the closes arriving with it (DUE_GATHER_SECONDS), and never past its second's end."""
    first, second = service.chat("late-1"), service.chat("late-2")
    service.sessions.close_many([("acme", "late-1", at(0.5))], now=T0 + 30.6)
    service.sessions.close_many([("acme", "late-2", at(1.5))], now=T0 + 40)
    assert service.scheduler.timers == [(SECOND, pytest.approx(DUE_GATHER_SECONDS)),
                                        (SECOND + 1, 0.0)]
    outcomes = service.sessions.fire_timer(SECOND, now=T0 + 30.7)
    outcomes += service.sessions.fire_timer(SECOND + 1, now=T0 + 40)
    assert [(o.conversation_id, o.status) for o in outcomes] == [
        (first, MigrationStatus.MIGRATED), (second, MigrationStatus.MIGRATED)]


def test_a_batch_of_due_closes_fires_its_timer_at_once(service: Service) -> None:
    """sessions_closed brought the second's closes together: nothing more to gather."""
    from conversation.services.sessions import GATHERED

    for i in range(GATHERED):
        service.chat(f"batch-{i}")
    service.sessions.close_many([("acme", f"batch-{i}", at(0.5)) for i in range(GATHERED)],
                                now=T0 + 30.6)
    assert service.scheduler.timers == [(SECOND, 0.0)]
    assert len(service.sessions.fire_timer(SECOND, now=T0 + 30.6)) == GATHERED


def test_a_close_dated_in_the_future_counts_from_its_arrival(service: Service) -> None:
    """A producer's clock ahead, or a hostile year 9999: the close cannot be later than it was
    received, so its migration is not held (with a timer years away) until that date."""
    conversation_id = service.chat("future")
    service.sessions.close_many([("acme", "future", "9999-12-31T23:59:59Z")], now=T0 + 0.5)
    assert service.scheduler.timers == [(SECOND, pytest.approx(GRACE + 0.5))]
    outcomes = service.sessions.fire_timer(SECOND, now=SECOND)
    assert [(o.conversation_id, o.status) for o in outcomes] == [
        (conversation_id, MigrationStatus.MIGRATED)]


# A burst of closes that were due already (a grace of 0 makes every close one; here, closes
# delivered 30 s late): the second's timer fires before that second ends, and waits for more of
# the burst by being set again, never by holding a worker process.
PASS = 3  # messages: what is worth a pass, for these tests (one message a conversation)


@pytest.fixture(params=["standalone", "cluster_paths"])
def bursting(request: pytest.FixtureRequest) -> Iterator[Service]:
    active = RedisActiveStore(fakeredis.FakeRedis(), prefix="unit:")
    active.cluster = request.param == "cluster_paths"
    repository = FakeRepository()
    scheduler = RecordingScheduler()
    migrator = ConversationMigrator(active, repository)
    passes: list[int] = []
    migrate_many = migrator.migrate_many

    def counted(requests, **kwargs):  # type: ignore[no-untyped-def]
        passes.append(len(requests))
        return migrate_many(requests, **kwargs)

    migrator.migrate_many = counted  # type: ignore[method-assign]
    due = DueMigrations(active, migrator, GRACE, RedisLocks(active.client, prefix="unit:"),
                        pass_messages=PASS)
    sessions = SessionLifecycle(active, scheduler, GRACE, repository, migrations=due)
    service = Service(active, repository, scheduler, sessions,
                      MessageSaver(active, repository, WordTokenizer()))
    service.passes = passes  # type: ignore[attr-defined]
    yield service


def late_close(service: Service, session: str, closed: float) -> None:
    """A close made at 10:00:00 + `closed`, delivered 30.05 s later: due already."""
    service.sessions.close_many([("acme", session, at(closed))], now=T0 + GRACE + closed + 0.05)


def test_a_burst_of_due_closes_waits_for_more_by_setting_its_timer_again(
    bursting: Service
) -> None:
    ids = [bursting.chat(f"b{i}") for i in range(3)]
    late_close(bursting, "b0", 0.1)
    assert bursting.scheduler.timers == [(SECOND, pytest.approx(DUE_GATHER_SECONDS))]
    # One message ready, less than a pass is worth, more of the burst may come: set again.
    assert bursting.sessions.fire_timer(SECOND, now=T0 + 30.2) == []
    assert bursting.scheduler.timers[-1] == (SECOND, pytest.approx(BURST_POLL_SECONDS))
    assert bursting.in_redis(ids[0]) and bursting.passes == []  # type: ignore[attr-defined]
    # The burst goes on: its closes join the armed bucket, without a timer each.
    late_close(bursting, "b1", 0.25)
    assert len(bursting.scheduler.timers) == 2
    assert bursting.sessions.fire_timer(SECOND, now=T0 + 30.3) == []  # new ones, still < PASS
    assert len(bursting.scheduler.timers) == 3
    # It stopped: the timer set again finds nothing new, and leads: one pass for the burst.
    outcomes = bursting.sessions.fire_timer(SECOND, now=T0 + 30.4)
    assert sorted(o.conversation_id for o in outcomes) == sorted(ids[:2])
    assert {o.status for o in outcomes} == {MigrationStatus.MIGRATED}
    assert bursting.passes == [2]  # type: ignore[attr-defined]
    assert len(bursting.scheduler.timers) == 3 and bursting.in_redis(ids[2])
    # Run once more (a redelivery), it finds nothing to do.
    assert bursting.sessions.fire_timer(SECOND, now=T0 + 30.5) == []
    assert bursting.active.ready_migrations(10) == []


def test_a_burst_worth_a_pass_is_led_at_once(bursting: Service) -> None:
    ids = [bursting.chat(f"b{i}") for i in range(PASS)]
    for i in range(PASS):
        late_close(bursting, f"b{i}", 0.1 + i * 0.01)
    outcomes = bursting.sessions.fire_timer(SECOND, now=T0 + 30.2)
    assert sorted(o.conversation_id for o in outcomes) == sorted(ids)
    assert [s for s, _ in bursting.scheduler.timers] == [SECOND]


def test_a_burst_timer_never_waits_past_its_seconds_end(bursting: Service) -> None:
    """Set again, it would fire after the end of its second, when a close whose grace had
    not passed would move: it leads now instead, whatever is ready."""
    conversation_id = bursting.chat("b0")
    late_close(bursting, "b0", 0.8)
    outcomes = bursting.sessions.fire_timer(SECOND, now=SECOND - BURST_POLL_SECONDS / 2)
    assert [(o.conversation_id, o.status) for o in outcomes] == [
        (conversation_id, MigrationStatus.MIGRATED)]
    assert len(bursting.scheduler.timers) == 1


def test_a_burst_timer_a_close_armed_again_leaves_the_next_look_to_that_closes_timer(
    bursting: Service
) -> None:
    """A close lands between the timer's take and its decision to wait: that close armed the
    second's timer again and scheduled it, so the waiting timer schedules none more."""
    first, second = bursting.chat("b0"), bursting.chat("b1")
    late_close(bursting, "b0", 0.1)
    take = bursting.active.take_close_timer

    def take_then_a_close(timer_second: int) -> list[str]:
        members = take(timer_second)
        late_close(bursting, "b1", 0.15)
        return members

    bursting.active.take_close_timer = take_then_a_close  # type: ignore[method-assign]
    assert bursting.sessions.fire_timer(SECOND, now=T0 + 30.2) == []
    bursting.active.take_close_timer = take  # type: ignore[method-assign]
    assert bursting.scheduler.timers == [(SECOND, pytest.approx(DUE_GATHER_SECONDS))] * 2
    outcomes = bursting.sessions.fire_timer(SECOND, now=T0 + 30.25)  # b1's: new, still < PASS
    assert outcomes == [] and len(bursting.scheduler.timers) == 3
    outcomes = bursting.sessions.fire_timer(SECOND, now=T0 + 30.35)
    assert sorted(o.conversation_id for o in outcomes) == sorted([first, second])


def test_a_session_reopened_while_its_burst_timer_waits_stays_active(bursting: Service) -> None:
    gone, back = bursting.chat("gone"), bursting.chat("back")
    late_close(bursting, "gone", 0.1)
    late_close(bursting, "back", 0.12)
    assert bursting.sessions.fire_timer(SECOND, now=T0 + 30.2) == []  # 2 messages < PASS
    assert bursting.sessions.open("acme", "back") is True
    outcomes = bursting.sessions.fire_timer(SECOND, now=T0 + 30.3)
    assert {(o.conversation_id, o.status) for o in outcomes} == {
        (gone, MigrationStatus.MIGRATED), (back, MigrationStatus.STALE)}
    assert bursting.in_redis(back) and not bursting.in_postgres(back)
    assert bursting.active.session_conversation("acme", "back") == back


def test_a_timer_whose_grace_had_not_passed_leads_at_its_seconds_end_as_before(
    bursting: Service
) -> None:
    """Closes within their grace: the timer fires at its second's end with all of them."""
    ids = [bursting.chat(f"s{i}") for i in range(2)]
    bursting.sessions.close_many([("acme", f"s{i}", at(0.1 + i * 0.3)) for i in range(2)],
                                 now=T0 + 1)
    outcomes = bursting.sessions.fire_timer(SECOND, now=SECOND)
    assert sorted(o.conversation_id for o in outcomes) == sorted(ids)
    assert len(bursting.scheduler.timers) == 1
