"""The save tasks over fakes: items stored and dead-lettered one by one, message ids derived
from the task, the size cap checked before anything else."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import pytest

from config.settings import Settings
from conversation import bootstrap
from conversation.adapters.dead_letters import DeadLetter
from conversation.domain.messages import NewMessage
from conversation.services.save import SaveOutcome
from tasks.base import payload_bytes
from tasks.conversation_tasks import (
    derived_message_id,
    save_message,
    save_messages,
    with_message_ids,
)
from tests.fakes import payload


class Poisoned(Exception):
    """What storage raises for one message it cannot take (a bug, not a server)."""


@dataclass
class FakeSaver:
    saved: list[NewMessage] = field(default_factory=list)

    def save_many(self, commands: Sequence[NewMessage]) -> list[SaveOutcome]:
        if any(command.content == "poison" for command in commands):
            raise Poisoned("storage cannot take this one")
        self.saved.extend(commands)
        return [SaveOutcome("c", command.message_id, True, "redis") for command in commands]

    def save(self, command: NewMessage) -> SaveOutcome:
        return self.save_many([command])[0]


@dataclass
class FakeDeadLetters:
    letters: list[DeadLetter] = field(default_factory=list)

    def send(self, letter: DeadLetter) -> None:
        self.letters.append(letter)


@dataclass
class FakeDeliveries:
    """The starts of each attempt that have not ended (conversation.adapters.deliveries)."""

    starts: dict[tuple[str, int], int] = field(default_factory=dict)

    def started(self, task_id: str, retries: int) -> int:
        key = (task_id, retries)
        self.starts[key] = self.starts.get(key, 0) + 1
        return self.starts[key]

    def finished(self, task_id: str, retries: int) -> None:
        self.starts.pop((task_id, retries), None)


@dataclass
class FakeContainer:
    settings: Settings = field(default_factory=lambda: Settings(max_task_bytes=10_000))
    saver: FakeSaver = field(default_factory=FakeSaver)
    dead_letters: FakeDeadLetters = field(default_factory=FakeDeadLetters)
    deliveries: FakeDeliveries = field(default_factory=FakeDeliveries)

    def close(self) -> None:
        pass


@pytest.fixture
def fake() -> Iterator[FakeContainer]:
    container = FakeContainer()
    bootstrap.reset_container(container)  # type: ignore[arg-type]
    yield container
    bootstrap.reset_container(None)


def test_one_message_storage_cannot_take_costs_only_itself(fake: FakeContainer) -> None:
    batch = [payload(content="one"), payload(content="poison"), payload(content="three")]
    result = save_messages.apply(kwargs={"messages": batch}, task_id="task-1").get()
    assert result == {"saved": 2, "rejected": 1}
    assert [c.content for c in fake.saver.saved] == ["one", "three"]
    (letter,) = fake.dead_letters.letters
    assert letter.kwargs == {"messages": [{**batch[1],
                                           "message_id": derived_message_id("task-1", 1)}]}
    assert "Poisoned" in letter.error


def test_missing_message_ids_are_derived_from_the_task_id_and_place(fake: FakeContainer) -> None:
    batch = [payload(content="a"), payload(content="b", message_id="given")]
    for _ in range(2):  # a redelivery or a retry: the same task id
        save_messages.apply(kwargs={"messages": batch}, task_id="task-2").get()
    ids = [c.message_id for c in fake.saver.saved]
    assert ids == [derived_message_id("task-2", 0), "given"] * 2
    save_message.apply(kwargs=payload(), task_id="task-3").get()
    assert fake.saver.saved[-1].message_id == derived_message_id("task-3")
    assert derived_message_id("task-2", 0) != derived_message_id("task-4", 0)


def test_a_failed_save_dead_letters_the_ids_it_derived(fake: FakeContainer) -> None:
    batch = [payload(content="a"), payload(content="b")]
    save_messages.on_failure(TimeoutError("PostgreSQL"), "task-5", (), {"messages": batch}, None)
    (letter,) = fake.dead_letters.letters
    assert letter.kwargs == with_message_ids(save_messages.name, {"messages": batch}, "task-5")
    assert [m["message_id"] for m in letter.kwargs["messages"]] == [
        derived_message_id("task-5", 0), derived_message_id("task-5", 1)]


def test_a_payload_over_the_cap_is_refused_whole_before_its_items(fake: FakeContainer) -> None:
    batch = [payload(content="x" * 4_000, message_id=f"m{i}") for i in range(3)]
    result = save_messages.apply(kwargs={"messages": batch}, task_id="task-6").get()
    assert result == {"saved": 0, "rejected": 3} and fake.saver.saved == []
    (letter,) = fake.dead_letters.letters
    assert not letter.replayable
    assert "MAX_TASK_BYTES" in str(letter.reasons)


def test_payload_bytes_counts_utf8_and_stops_past_the_limit() -> None:
    assert payload_bytes({"ab": ["é", 1]}, 100) == 2 + 2 + 8
    huge = {"messages": [{"content": "x" * 1000}] * 1000}
    assert 100 < payload_bytes(huge, 100) <= 100 + 1000 + 8


def test_the_cap_comes_first_for_one_message_and_for_too_long_a_batch(fake: FakeContainer) -> None:
    save_message.apply(kwargs=payload(content="x" * 20_000), task_id="task-7").get()
    save_messages.apply(kwargs={"messages": [payload()] * 2_000}, task_id="task-8").get()
    assert fake.saver.saved == []
    assert [letter.replayable for letter in fake.dead_letters.letters] == [False, False]
    assert all("MAX_TASK_BYTES" in str(letter.reasons) for letter in fake.dead_letters.letters)


def test_a_batch_whose_worker_keeps_dying_is_dead_lettered_with_its_derived_ids(
    fake: FakeContainer,
) -> None:
    """Both worker-lost paths (the redelivery cap in before_start, the pool's WorkerLostError
    past max_retries) dead-letter the ids the attempts derived: a replay stores nothing twice.
    Failed before the fix: both letters held `message_id: None`."""
    from billiard.exceptions import WorkerLostError
    from celery.exceptions import Ignore

    from tasks.base import MAX_REDELIVERIES, _dead_letter_lost_worker

    batch = [payload(content="a"), payload(content="b", message_id="given")]
    expected = [derived_message_id("task-9", 0), "given"]
    save_messages.push_request(id="task-9", retries=0, delivery_info={"redelivered": True})
    try:
        with pytest.raises(Ignore):
            for _ in range(MAX_REDELIVERIES + 2):
                save_messages.before_start("task-9", (), {"messages": batch})
    finally:
        save_messages.pop_request()
    _dead_letter_lost_worker(sender=save_messages, task_id="task-9",
                             exception=WorkerLostError("signal 9"), kwargs={"messages": batch})
    capped, lost = fake.dead_letters.letters
    for letter in (capped, lost):
        assert letter.error.startswith("WorkerLost") and letter.task_id == "task-9"
        assert [m["message_id"] for m in letter.kwargs["messages"]] == expected


@dataclass
class FlakySaver(FakeSaver):
    """PostgreSQL/Redis away for the first `failures` round trips (a transient failure)."""

    failures: int = 0

    def save_many(self, commands: Sequence[NewMessage]) -> list[SaveOutcome]:
        if self.failures:
            self.failures -= 1
            raise TimeoutError("the store timed out")
        return super().save_many(commands)


def test_an_invalid_item_is_dead_lettered_once_whatever_the_retries(fake: FakeContainer) -> None:
    """A transient failure retries the batch: the invalid item, dead-lettered alone on the
    first attempt, is not sent again, nor dead-lettered again, nor put in the final letter.
    Failed before the fix: 4 letters for the invalid item, and it was in the batch letter."""
    from tasks.base import DomainTask

    invalid = payload(content="bad", role="robot")
    batch = [payload(content="a"), invalid, payload(content="b", message_id="given")]
    fake.saver = FlakySaver(failures=1)
    # The result is the last attempt's (the invalid item was the first attempt's refusal).
    assert save_messages.apply(kwargs={"messages": batch}, task_id="task-10").get() == {
        "saved": 2, "rejected": 0}
    assert [(c.content, c.message_id) for c in fake.saver.saved] == [
        ("a", derived_message_id("task-10", 0)), ("b", "given")]
    (alone,) = fake.dead_letters.letters
    assert alone.kwargs == {"messages": [{**invalid,
                                          "message_id": derived_message_id("task-10", 1)}]}

    fake.dead_letters.letters.clear()
    fake.saver = FlakySaver(failures=DomainTask.max_retries + 1)  # every attempt fails
    save_messages.apply(kwargs={"messages": batch}, task_id="task-11")
    alone, final = fake.dead_letters.letters
    assert [m["content"] for m in alone.kwargs["messages"]] == ["bad"]
    # The final letter holds only what still needs saving, with the ids the attempts used.
    assert final.kwargs == {"messages": [{**batch[0], "message_id": derived_message_id(
        "task-11", 0)}, batch[2]]}
    assert "TimeoutError" in final.error and final.attempts == DomainTask.max_retries + 1
def _call(call_id: str = "c1", arguments: object = "{}", **function: object) -> dict:
    return {"id": call_id, "type": "function",
            "function": {"name": "lookup", "arguments": arguments, **function}}


@pytest.mark.parametrize(
    ("item", "field", "needle"),
    [
        (payload(role="user", tool_calls=[_call()]), "tool_calls", "only an assistant"),
        (payload(role="tool", content="42"), "tool_call_id", "must name the tool call"),
        (payload(role="user", tool_call_id="c1"), "tool_call_id", "only a tool message"),
        (payload(role="assistant", tool_calls=[_call(arguments={"a": 1})]), "tool_calls",
         "Not a valid string"),
        (payload(role="assistant", tool_calls=[_call(f"c{i}") for i in range(129)]),
         "tool_calls", "at most 128"),
        (payload(role="assistant", tool_calls=[_call(arguments="x" * 300_000)]), "tool_calls",
         "bytes; at most"),
        (payload(role="assistant", tool_calls=[_call(), _call()]), "tool_calls", "share an id"),
        (payload(role="assistant", tool_calls=[_call(arguments="{\"a\": \"\x00\"}")]),
         "tool_calls", "NUL"),
        (payload(role="assistant", tool_calls=[{**_call(), "type": "code"}]), "tool_calls",
         "Must be equal to function"),
        (payload(role="assistant", tool_calls=[{"id": "c1", "type": "function"}]),
         "tool_calls", "Missing data"),
        (payload(role="assistant", tool_calls={"id": "c1"}), "tool_calls", "Not a valid list"),
        # 6 KB of brackets: json.loads of it raised RecursionError in every reader.
        (payload(role="assistant", tool_calls=[_call(arguments="[" * 3000 + "]" * 3000)]),
         "tool_calls", "nested deeper than 64"),
    ],
)
def test_an_invalid_tool_shape_is_dead_lettered_alone_with_its_reason(
    fake: FakeContainer, item: dict, field: str, needle: str,
) -> None:
    fake.settings = Settings(max_task_bytes=2_000_000)
    good = [payload(role="assistant", content="", tool_calls=[_call("c9")]),
            payload(role="tool", content="found", tool_call_id="c9")]
    result = save_messages.apply(kwargs={"messages": [good[0], item, good[1]]},
                                 task_id="task-t").get()
    assert result == {"saved": 2, "rejected": 1}
    assert fake.saver.saved[0].tool_calls == good[0]["tool_calls"]
    assert fake.saver.saved[1].tool_call_id == "c9"
    (letter,) = fake.dead_letters.letters
    assert field in letter.reasons and needle in str(letter.reasons[field]), letter.reasons
