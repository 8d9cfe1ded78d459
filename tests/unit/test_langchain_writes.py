"""LangChain history writes are validated as the save task's payloads are (issue 15)."""
from __future__ import annotations

import pytest
from langchain_core.messages import HumanMessage

from conversation.langchain import ConversationChatHistory
from tests.unit.test_langchain_history import container


@pytest.mark.parametrize(
    ("history", "message", "needle"),
    [
        ({}, HumanMessage("a NUL \x00 here"), "NUL"),
        ({}, HumanMessage("hi", name="bob\x00"), "NUL"),
        ({}, HumanMessage("hi", id="m-1\n"), "letters, digits"),
        ({"tenant_id": "acme\n"}, HumanMessage("hi"), "letters, digits"),
    ],
)
def test_what_the_save_task_refuses_the_history_refuses(
    history: dict, message: HumanMessage, needle: str
) -> None:
    services = container()
    chat = ConversationChatHistory(
        services, **{"tenant_id": "acme", "session_id": "s", "agent_id": "b", **history})
    with pytest.raises(ValueError, match=needle):
        chat.add_messages([message])
    assert services.active_store.session_conversation("acme", "s") is None
