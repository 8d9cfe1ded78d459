"""The service as the memory of a LangChain agent (`langchain.agents.create_agent`).

    from langchain.agents import create_agent
    from conversation.langchain_middleware import ConversationMemory

    agent = create_agent(model, tools=[lookup_order], system_prompt="You are ACME's support.",
                         middleware=[ConversationMemory(Container(), tenant_id="acme",
                                                        agent_id="support-bot")])
    agent.invoke({"messages": [HumanMessage("Where is order 4521?")]},
                 {"configurable": {"thread_id": "session-1"}})

Before each model call the conversation part of the model's input is replaced by the service's
context for the model's window (`get_context`: the token counts cached at save, the summary
built by a worker); the agent's system prompt and tools stay the agent's, and so does its own
state. What the model answers, and what each tool returns, is saved through the service's save
path, with ids derived from the run, so a retried step is stored once.

Two modes: in-process, with a `Container` (the saver and context builder called directly), or
remote, with a `ConversationClient` (or a bare Celery app): `send_task` by name, and
`get_context(wait_for_message_id=...)` so the context holds what was just sent. The remote
mode needs only `celery` and langchain: nothing of the project is imported for it.

The context is given to the model as the chat APIs accept it (`_tool_rule`: results without
their call, calls without their result dropped), and it must end with the messages the model
is about to answer; otherwise the agent goes on with its own messages.

A failure of the service never fails the agent: it goes on with its own messages, and one
warning is logged for the run (the service is then left alone until the run ends).

The parts: memory.py (the middleware: LangChain's hooks, what is saved when), service.py (the
two modes), context.py (the context as the model's messages, to the chat APIs' tool rule),
ids.py (message ids derived from the run, session ids, created_at). Only `conversation.client`
of the service is imported at module level (setup.cfg's contract keeps it so).
"""
from __future__ import annotations

from conversation.langchain_middleware.context import context_messages
from conversation.langchain_middleware.memory import ConversationMemory
from conversation.langchain_middleware.service import ServiceFailure

__all__ = ["ConversationMemory", "ServiceFailure", "context_messages"]
