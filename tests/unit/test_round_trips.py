"""The round trips of each measured path, pinned: a move of the code (the tiers, the read side,
the adapters' packages) must not add one silently. Counted on fakeredis through the process's
own wiring (Container: the circuit breaker, Tiers, the services), a pipeline counting as one
round trip whatever it holds."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import fakeredis
from celery import Celery
import pytest

from config.settings import Settings
from conversation.bootstrap import Container, Overrides
from conversation.domain.messages import NewMessage, Role
from tests.fakes import FakeRepository, WordTokenizer


class CountingRedis(fakeredis.FakeRedis):
    """Records each round trip to the server: a command's name, or a pipeline's commands."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.round_trips: list[list[str]] = []

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self.round_trips.append([str(args[0]).upper()])
        return super().execute_command(*args, **options)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        pipe = super().pipeline(transaction, shard_hint)
        execute = pipe.execute

        def counted(raise_on_error: bool = True) -> Any:
            self.round_trips.append([str(c[0][0]).upper() for c in pipe.command_stack])
            return execute(raise_on_error)

        pipe.execute = counted  # type: ignore[method-assign]
        return pipe


@pytest.fixture
def client() -> CountingRedis:
    return CountingRedis()


@pytest.fixture
def container(client: CountingRedis) -> Iterator[Container]:
    container = Container(Settings(redis_key_prefix="rt:"), Overrides(
        redis=client, repository=FakeRepository(), tokenizer=WordTokenizer(),  # type: ignore[arg-type]
        producer=Celery("round-trips", set_as_current=False),  # never asked: under budget
    ))
    yield container


def message(content: str, message_id: str, session_id: str = "s-1") -> NewMessage:
    return NewMessage(tenant_id="acme", session_id=session_id, agent_id="bot", role=Role.USER,
                      content=content, message_id=message_id)


def counted(client: CountingRedis, work: Any) -> tuple[Any, list[list[str]]]:
    client.round_trips.clear()
    result = work()
    return result, list(client.round_trips)


def test_a_save_to_an_active_session_is_one_evalsha(container: Container,
                                                     client: CountingRedis) -> None:
    first = container.saver.save(message("hello", "m-0"))  # makes the conversation
    container.saver.save(message("warm", "m-1"))  # the script is loaded by now
    outcome, trips = counted(client, lambda: container.saver.save(message("again", "m-2")))
    assert outcome.stored and outcome.conversation_id == first.conversation_id
    assert trips == [["EVALSHA"]]


def test_a_batch_to_active_sessions_is_one_evalsha(container: Container,
                                                   client: CountingRedis) -> None:
    for s in range(3):
        container.saver.save(message("hello", f"m-{s}", session_id=f"s-{s}"))
    batch = [message(f"more {i}", f"b-{i}", session_id=f"s-{i % 3}") for i in range(9)]
    outcomes, trips = counted(client, lambda: container.saver.save_many(batch))
    assert all(o.stored and o.refusal is None for o in outcomes)
    assert trips == [["EVALSHA"]]


def test_a_context_read_is_one_pipeline(container: Container, client: CountingRedis) -> None:
    saved = [container.saver.save(message(f"message {i}", f"m-{i}")) for i in range(5)]
    conversation_id = saved[0].conversation_id
    context, trips = counted(client, lambda: container.context_builder.get_context(
        tenant_id="acme", conversation_id=conversation_id, window="8k"))
    assert [m["content"] for m in context["messages"]] == [f"message {i}" for i in range(5)]
    assert len(trips) == 1, trips  # the owner and the newest messages, read together

    # Another tenant's id: the same single read, and nothing of it.
    context, trips = counted(client, lambda: container.context_builder.get_context(
        tenant_id="intruder", conversation_id=conversation_id, window="8k"))
    assert context["messages"] == [] and len(trips) == 1


def test_the_full_conversation_is_three_reads(container: Container,
                                              client: CountingRedis) -> None:
    """Off the hot path (the API's transcript, the LangChain history): as before the move,
    the owner, then the conversation's record (its key names the owner), then the messages."""
    saved = [container.saver.save(message(f"message {i}", f"m-{i}")) for i in range(3)]
    found, trips = counted(client, lambda: container.tiers.locate(
        "acme", saved[0].conversation_id))
    assert found is not None and trips == [["GET"], ["GET"]]
    history, trips = counted(client, found.history.messages)
    assert [m.content for m in history] == ["message 0", "message 1", "message 2"]
    assert len(trips) == 1
