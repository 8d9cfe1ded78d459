"""get_context(wait_for_message_id): read-your-writes for a caller that just sent a save."""
from __future__ import annotations

import threading
import time
from typing import Any

import fakeredis
import pytest

from conversation.adapters.redis import RedisActiveStore
from conversation.domain.messages import Conversation, Message, NewMessage, Role
from conversation.services.context import ContextBuilder
from conversation.services.ports import ActiveStoreUnavailable
from conversation.services.save import MessageSaver
from tests.fakes import FakeRepository, WordTokenizer

WINDOWS = {"8k": ("token_buffer", 6000)}


def services(wait_seconds: float = 2.0) -> tuple[MessageSaver, ContextBuilder]:
    active = RedisActiveStore(fakeredis.FakeRedis(), prefix="w:")
    repository = FakeRepository()
    saver = MessageSaver(active, repository, WordTokenizer())
    builder = ContextBuilder(active, repository, WordTokenizer(), windows=WINDOWS,
                             model_windows={}, wait_seconds=wait_seconds)
    return saver, builder


def message(message_id: str, content: str, session_id: str = "s-1") -> NewMessage:
    return NewMessage(tenant_id="acme", session_id=session_id, agent_id="bot", role=Role.USER,
                      content=content, message_id=message_id)


def test_a_message_saved_while_the_read_waits_is_in_it() -> None:
    """The session's first message: it has no conversation when the read starts."""
    saver, builder = services()
    later = threading.Timer(0.3, saver.save, [message("m-1", "hello")])
    later.start()
    try:
        context = builder.get_context(tenant_id="acme", session_id="s-1", window="8k",
                                      wait_for_message_id="m-1")
    finally:
        later.join(5)
    assert context["waited_for"] == "found"
    assert [m["content"] for m in context["messages"]] == ["hello"]


def test_a_message_stored_already_needs_no_wait() -> None:
    saver, builder = services()
    saver.save(message("m-1", "hello"))
    context = builder.get_context(tenant_id="acme", session_id="s-1", window="8k",
                                  wait_for_message_id="m-1")
    assert context["waited_for"] == "found" and context["messages"][-1]["content"] == "hello"
    plain = builder.get_context(tenant_id="acme", session_id="s-1", window="8k")
    assert "waited_for" not in plain


def test_a_message_stored_already_is_answered_by_one_read() -> None:
    """The save a producer sent just before is usually stored when the read starts: the read
    itself is the first look, with no separate look at the stores and no second read."""
    saver, builder = services()
    saver.save(message("m-1", "hello"))
    calls: list[str] = []
    tiers = builder.tiers

    def counted(name: str) -> Any:
        call = getattr(tiers, name)

        def counting(*args: Any) -> Any:
            calls.append(name)
            return call(*args)
        return counting

    for name in ("has_message", "owned_history", "session_conversation"):
        setattr(tiers, name, counted(name))
    context = builder.get_context(tenant_id="acme", session_id="s-1", window="8k",
                                  wait_for_message_id="m-1")
    assert context["waited_for"] == "found" and context["messages"][-1]["content"] == "hello"
    assert calls == ["session_conversation", "owned_history"]


def test_a_message_never_sent_is_answered_missing_after_the_wait() -> None:
    saver, builder = services(wait_seconds=0.5)
    saver.save(message("m-1", "hello"))
    began = time.monotonic()
    context = builder.get_context(tenant_id="acme", session_id="s-1", window="8k",
                                  wait_for_message_id="never")
    assert time.monotonic() - began >= 0.5  # it did wait
    assert context["waited_for"] == "missing"
    assert [m["content"] for m in context["messages"]] == ["hello"]


def stored(message_id: str, content: str, second: int) -> Message:
    return Message(message_id, Role.USER, content, f"2026-01-01T00:00:0{second}.000000Z", 5,
                   "words")


class DownStore:
    """Redis down: every call fails as the circuit breaker makes it fail."""

    def __getattr__(self, name: str):  # noqa: ANN204
        def fail(*args: object, **kwargs: object) -> None:
            raise ActiveStoreUnavailable("down")
        return fail


def test_without_redis_the_wait_polls_postgresql_a_few_times_not_in_a_loop() -> None:
    repository = FakeRepository()
    looks: list[float] = []
    has_message = repository.has_message

    def counting(tenant_id: str, conversation_id: str, message_id: str) -> bool:
        looks.append(time.monotonic())
        return has_message(tenant_id, conversation_id, message_id)

    repository.has_message = counting  # type: ignore[method-assign]
    builder = ContextBuilder(DownStore(), repository, WordTokenizer(),  # type: ignore[arg-type]
                             windows=WINDOWS, model_windows={}, wait_seconds=2.0)
    conversation_id = "c-1"
    repository.conversations[conversation_id] = Conversation(
        conversation_id, "acme", "s-1", "bot", "2026-01-01T00:00:00.000000Z")
    repository.stored[conversation_id] = [stored("m-1", "first", 1)]
    context = builder.get_context(tenant_id="acme", conversation_id=conversation_id,
                                  window="8k", wait_for_message_id="never")
    assert context["waited_for"] == "missing"
    assert 3 <= len(looks) <= 12, f"{len(looks)} looks in 2 s"

    looks.clear()
    # What a save does during the outage: straight into PostgreSQL.
    later = threading.Timer(0.3, repository.stored[conversation_id].append,
                            [stored("m-2", "second", 2)])
    later.start()
    try:
        context = builder.get_context(tenant_id="acme", conversation_id=conversation_id,
                                      window="8k", wait_for_message_id="m-2")
    finally:
        later.join(5)
    assert context["waited_for"] == "found"
    assert [m["content"] for m in context["messages"]] == ["first", "second"]


def test_every_save_path_announces_what_it_stored() -> None:
    """Redis's one-script save, its two-step (Redis Cluster) save and the append to a
    conversation already in PostgreSQL each wake a waiter: `wait` returns True on the
    announcement itself, never by polling."""
    from conversation.services.migration import ConversationMigrator

    for cluster in (False, True):
        active = RedisActiveStore(fakeredis.FakeRedis(), prefix="a:")
        active.cluster = cluster
        repository = FakeRepository()
        saver = MessageSaver(active, repository, WordTokenizer())

        def announced(command: NewMessage) -> bool:
            listener = active.listen_for("acme", command.message_id)
            try:
                saver.save(command)
                return listener.wait(5.0)
            finally:
                listener.close()

        assert announced(message("m-1", "first, new conversation"))
        assert announced(message("m-2", "second, appended"))
        conversation_id = active.session_conversation("acme", "s-1")
        closed = active.close_session("acme", "s-1", "2026-01-01T00:00:00.000000Z")
        migrated = ConversationMigrator(active, repository).migrate(conversation_id,
                                                                    closed.generation)
        assert migrated.messages == 2
        late = NewMessage(tenant_id="acme", session_id="s-1", agent_id="bot", role=Role.USER,
                          content="late", message_id="m-3", conversation_id=conversation_id)
        assert announced(late), f"PostgreSQL's append (cluster={cluster})"
        assert repository.has_message("acme", conversation_id, "m-3")
        # A duplicate is stored already: nothing to announce, a waiter finds it by looking.
        listener = active.listen_for("acme", "m-2")
        saver.save(message("m-2", "second, appended"))
        assert listener.wait(0.2) is False
        listener.close()


def test_another_tenants_conversation_answers_nothing() -> None:
    """Waiting on another tenant's conversation answers nothing of it: not its messages, not
    whether a message id is there."""
    saver, builder = services(wait_seconds=0.2)
    theirs = saver.save(message("m-1", "private")).conversation_id
    context = builder.get_context(tenant_id="intruder", conversation_id=theirs, window="8k",
                                  wait_for_message_id="m-1")
    assert context["waited_for"] == "missing" and context["messages"] == []


def recorded_wakes(active: RedisActiveStore) -> list[bool]:
    """What each of the reads' waits on an announcement returned (True: announced)."""
    wakes: list[bool] = []
    listen_for = active.listen_for

    def listening(tenant_id: str, message_id: str) -> Any:
        listener = listen_for(tenant_id, message_id)
        wait = listener.wait

        def recording(seconds: float) -> bool:
            wakes.append(wait(seconds))
            return wakes[-1]

        listener.wait = recording  # type: ignore[method-assign]
        return listener

    active.listen_for = listening  # type: ignore[method-assign]
    return wakes


@pytest.mark.parametrize("cluster", [False, True], ids=["one-script save", "two-step save"])
def test_another_tenants_message_with_the_same_id_never_wakes_the_wait(cluster: bool) -> None:
    """Announcements are per tenant: another tenant saving a message with the id waited for,
    while the read waits, neither wakes it nor makes it "found"."""
    saver, builder = services(wait_seconds=0.6)
    active = builder.active
    assert isinstance(active, RedisActiveStore)
    active.cluster = cluster
    saver.save(message("m-0", "ours"))
    wakes = recorded_wakes(active)
    theirs = NewMessage(tenant_id="intruder", session_id="s-9", agent_id="bot", role=Role.USER,
                        content="theirs", message_id="m-1")
    outcomes = []
    later = threading.Timer(0.1, lambda: outcomes.append(saver.save(theirs)))
    later.start()
    try:
        context = builder.get_context(tenant_id="acme", session_id="s-1", window="8k",
                                      wait_for_message_id="m-1")
    finally:
        later.join(5)
    assert [o.stored for o in outcomes] == [True]  # saved (and announced) meanwhile
    assert context["waited_for"] == "missing"
    assert [m["content"] for m in context["messages"]] == ["ours"]
    assert wakes and True not in wakes, wakes


def test_a_message_saved_in_another_conversation_of_the_session_is_missing() -> None:
    """Woken by the announcement, the read checks the message is in the conversation it
    reads: saved in another conversation of the same session, it is not in this context."""
    saver, builder = services()
    first = saver.save(message("m-1", "in the session's conversation")).conversation_id
    elsewhere = NewMessage(tenant_id="acme", session_id="s-1", agent_id="bot", role=Role.USER,
                           content="elsewhere", message_id="m-2", conversation_id="other-conv")
    outcomes = []
    later = threading.Timer(0.3, lambda: outcomes.append(saver.save(elsewhere)))
    later.start()
    try:
        context = builder.get_context(tenant_id="acme", session_id="s-1", window="8k",
                                      wait_for_message_id="m-2")
    finally:
        later.join(5)
    assert [o.conversation_id for o in outcomes] == ["other-conv"]
    assert context["conversation_id"] == first
    assert [m["content"] for m in context["messages"]] == ["in the session's conversation"]
    assert context["waited_for"] == "missing"


def test_an_announced_message_placed_back_in_time_is_found_by_one_more_look() -> None:
    """A late arrival (an old created_at) is placed where its time puts it, beyond the newest
    messages the read fetched first: one look at the conversation confirms it is there."""
    saver, builder = services()
    # 300 messages of 50 words: the budget (6,000) runs out in the first 250 read.
    for i in range(1, 300):
        saver.save(NewMessage(tenant_id="acme", session_id="s-1", agent_id="bot",
                              role=Role.USER, content="word " * 50, message_id=f"m-{i}",
                              created_at=f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}.000000Z"))
    old = NewMessage(tenant_id="acme", session_id="s-1", agent_id="bot", role=Role.USER,
                     content="late", message_id="late",
                     created_at="2025-12-31T00:00:00.000000Z")
    later = threading.Timer(0.3, saver.save, [old])
    later.start()
    try:
        context = builder.get_context(tenant_id="acme", session_id="s-1", window="8k",
                                      wait_for_message_id="late")
    finally:
        later.join(5)
    assert context["waited_for"] == "found"


def test_the_wait_for_a_message_never_sent_ends_at_its_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The bound, on a simulated clock (no timing assert): the read's waits on the
    announcement add up to `wait_seconds`, in a few growing steps, then 'missing'."""
    import conversation.services.context as context_module

    now = [1000.0]
    waits: list[float] = []

    class Listener:
        def wait(self, seconds: float) -> bool:
            waits.append(seconds)
            now[0] += seconds
            return False

        def close(self) -> None:
            pass

    class Clock:  # the context module's clock only
        @staticmethod
        def monotonic() -> float:
            return now[0]

    monkeypatch.setattr(context_module, "time", Clock)
    saver, builder = services(wait_seconds=2.0)
    saver.save(message("m-1", "hello"))
    builder.active.listen_for = lambda tenant_id, message_id: Listener()  # type: ignore[method-assign]
    context = builder.get_context(tenant_id="acme", session_id="s-1", window="8k",
                                  wait_for_message_id="never")
    assert context["waited_for"] == "missing"
    assert [m["content"] for m in context["messages"]] == ["hello"]
    assert sum(waits) == pytest.approx(2.0) and 3 <= len(waits) <= 12, waits


def test_a_message_stored_already_needs_no_subscription() -> None:
    """The save a producer sent just before is usually stored when the read starts: that
    read answers, and no subscription is made (a subscribe and its confirmation, then an
    unsubscribe, were a third of the wait's cost above a plain read, measured)."""
    saver, builder = services()
    saver.save(message("m-1", "hello"))
    subscriptions: list[str] = []
    listen_for = builder.active.listen_for

    def listening(tenant_id: str, message_id: str) -> Any:
        subscriptions.append(message_id)
        return listen_for(tenant_id, message_id)

    builder.active.listen_for = listening  # type: ignore[method-assign]
    context = builder.get_context(tenant_id="acme", session_id="s-1", window="8k",
                                  wait_for_message_id="m-1")
    assert context["waited_for"] == "found" and subscriptions == []


def test_a_message_stored_between_the_read_and_the_subscription_is_found() -> None:
    """Subscribed only after the first read missed: a save stored in between announced
    before anyone listened, so the look after subscribing finds it (no wait to the end)."""
    saver, builder = services(wait_seconds=30.0)
    saver.save(message("m-0", "first"))
    listen_for = builder.active.listen_for

    waits: list[float] = []

    def listening(tenant_id: str, message_id: str) -> Any:
        saver.save(message("m-1", "stored before the subscription"))  # announced unheard
        listener = listen_for(tenant_id, message_id)
        wait = listener.wait

        def recording(seconds: float) -> bool:
            waits.append(seconds)
            return wait(seconds)

        listener.wait = recording  # type: ignore[method-assign]
        return listener

    builder.active.listen_for = listening  # type: ignore[method-assign]
    context = builder.get_context(tenant_id="acme", session_id="s-1", window="8k",
                                  wait_for_message_id="m-1")
    assert waits == []  # found by the look after subscribing, never blocked on
    assert context["waited_for"] == "found"
    assert context["messages"][-1]["content"] == "stored before the subscription"


def test_a_batch_announces_each_message_someone_waits_for() -> None:
    """A batch's script tells the messages waited for by one PUBSUB NUMSUB and announces
    those (one PUBLISH each), whichever session or group of the batch holds them; a message
    nobody waits for is not announced, and a duplicate never is."""
    active = RedisActiveStore(fakeredis.FakeRedis(), prefix="b:")
    saver = MessageSaver(active, FakeRepository(), WordTokenizer())
    for s in range(3):  # the sessions exist: the batch below is one script call
        saver.save(message(f"first-{s}", "hello", session_id=f"s-{s}"))
    saver.save(message("old", "stored before", session_id="s-1"))
    waited = ["b-1", "b-4", "old"]
    listeners = {m: active.listen_for("acme", m) for m in waited}
    try:
        batch = [message(f"b-{i}", f"more {i}", session_id=f"s-{i % 3}") for i in range(6)]
        batch.append(message("old", "stored before", session_id="s-1"))  # a duplicate
        outcomes = saver.save_many(batch)
        assert [o.stored for o in outcomes] == [True] * 6 + [False]
        assert listeners["b-1"].wait(5.0) and listeners["b-4"].wait(5.0)
        assert listeners["old"].wait(0.2) is False
    finally:
        for listener in listeners.values():
            listener.close()
