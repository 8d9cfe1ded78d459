"""The round trips of the measured paths, pinned (issue 16): a move or a refactor of the
adapters cannot add one silently. Counted where the client meets the network: each batch of
commands redis-py sends is one round trip, and each statement psycopg runs is one too.

- a save to an active session (standalone Redis): one round trip, one EVALSHA;
- a context read of an active conversation: one pipeline;
- a migration: its messages by COPY, never row by row.

These pass on the code before the move as after it, and fail on it once a command is added to
the save path or to the context read's pipeline.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from redis.connection import AbstractConnection

from conversation.bootstrap import Container
from conversation.domain.messages import NewMessage, Role

pytestmark = pytest.mark.integration


class RedisSpy:
    """Each round trip to Redis as the list of its command names."""

    def __init__(self) -> None:
        self.round_trips: list[list[str]] = []
        self._pending: list[str] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        spy = self
        send_command = AbstractConnection.send_command
        pack_commands = AbstractConnection.pack_commands
        send_packed = AbstractConnection.send_packed_command

        def one_command(connection: Any, *args: Any, **kwargs: Any) -> Any:
            spy.round_trips.append([_name(args[0])])
            return send_command(connection, *args, **kwargs)

        def packed_many(connection: Any, commands: Any) -> Any:  # a pipeline's batch
            spy._pending.extend(_name(command[0]) for command in commands)
            return pack_commands(connection, commands)

        def sent(connection: Any, command: Any, check_health: bool = True) -> Any:
            if spy._pending:
                spy.round_trips.append(spy._pending)
            spy._pending = []
            return send_packed(connection, command, check_health)

        monkeypatch.setattr(AbstractConnection, "send_command", one_command)
        monkeypatch.setattr(AbstractConnection, "pack_commands", packed_many)
        monkeypatch.setattr(AbstractConnection, "send_packed_command", sent)

    def clear(self) -> None:
        self.round_trips = []


def _name(word: Any) -> str:
    return (word.decode() if isinstance(word, bytes) else str(word)).split()[0].upper()


@pytest.fixture
def spied(container: Container, monkeypatch: pytest.MonkeyPatch) -> Iterator[RedisSpy]:
    spy = RedisSpy()
    spy.install(monkeypatch)
    yield spy


def _message(session: str, index: int, tenant: str = "rt") -> NewMessage:
    return NewMessage(tenant_id=tenant, session_id=session, agent_id="bot",
                      role=Role.USER if index % 2 == 0 else Role.ASSISTANT,
                      content=f"turn {index}", message_id=f"m{index}",
                      created_at=f"2026-12-01T10:00:{index:02d}Z")


def test_a_save_to_an_active_session_is_one_evalsha(container: Container,
                                                    spied: RedisSpy) -> None:
    session = f"rt-save-{uuid.uuid4().hex}"
    container.saver.save(_message(session, 0))  # the session's first: claimed in PostgreSQL
    container.saver.save(_message(session, 1))  # scripts loaded, session active
    spied.clear()
    outcome = container.saver.save(_message(session, 2))
    assert outcome.conversation_id
    assert spied.round_trips == [["EVALSHA"]]


def test_a_context_read_of_an_active_conversation_is_one_pipeline(
    container: Container, spied: RedisSpy
) -> None:
    session = f"rt-context-{uuid.uuid4().hex}"
    outcome = None
    for index in range(3):
        outcome = container.saver.save(_message(session, index))
    assert outcome is not None
    spied.clear()
    context = container.context_builder.get_context(
        tenant_id="rt", conversation_id=outcome.conversation_id, window="8k")
    assert [m["content"] for m in context["messages"]] == ["turn 0", "turn 1", "turn 2"]
    assert spied.round_trips == [["LLEN", "LINDEX", "LRANGE", "GET"]]


def test_a_migration_copies_its_messages(container: Container,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    session = f"rt-migrate-{uuid.uuid4().hex}"
    for index in range(5):
        container.saver.save(_message(session, index))
    closed = container.active_store.close_session("rt", session, "2026-12-01T10:01:00Z")
    assert closed is not None

    copies: list[str] = []
    statements: list[str] = []
    copy = psycopg.Cursor.copy
    execute = psycopg.Cursor.execute

    def spied_copy(cursor: Any, statement: Any, *args: Any, **kwargs: Any) -> Any:
        copies.append(str(statement))
        return copy(cursor, statement, *args, **kwargs)

    def spied_execute(cursor: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        statements.append(str(query))
        return execute(cursor, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "copy", spied_copy)
    monkeypatch.setattr(psycopg.Cursor, "execute", spied_execute)
    outcome = container.migrator.migrate(closed.conversation_id, closed.generation)
    assert outcome.messages == 5
    assert len(copies) == 1 and copies[0].startswith("COPY messages (")
    assert not [s for s in statements if "INSERT INTO messages" in s]
    assert [m.content for m in container.repository.messages(closed.conversation_id)] == [
        f"turn {index}" for index in range(5)]
