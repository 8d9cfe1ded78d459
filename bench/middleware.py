"""Issue 19's rows: what ConversationMemory adds to each model call of a create_agent agent, in
process and through Celery, beside LangChain's SummarizationMiddleware on the same
2,000-message history (which the agent then carries in its own state)."""
from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

SIZE = 2_000
CALLS = 30
CONTENTS = [
    "Where is my order? It was due on Monday and the tracking page has not changed since.",
    "It left our warehouse yesterday; the carrier expects to deliver it tomorrow morning.",
    "Could you also change the delivery address to my office at 5 Main Street, Springfield?",
    "Done: the carrier has the new address, and no signature is needed for this parcel.",
]


def _median_ms(run: Callable[[], object], calls: int) -> float:
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def bench_middleware(servers: Any, n: int, report: Callable[[Any], None], row: type) -> None:
    """Each agent call is one model call (the fake model answers at once, without tools): the
    added cost is the agent's time with the middleware less the same agent's without it, on
    the same input."""
    from langchain.agents import create_agent
    from langchain.agents.middleware import SummarizationMiddleware
    from langchain_core.language_models.fake_chat_models import FakeListChatModel
    from langchain_core.messages import AIMessage, HumanMessage

    from conversation.bootstrap import Container
    from conversation.domain.messages import NewMessage, Role
    from conversation.langchain_middleware import ConversationMemory
    from tests.agent_fakes import ToolCallingModel
    from tests.workers import producer

    # The running service's own settings: the remote agent's tasks go to its worker, as a
    # user's agent's would (`conversation run`, as `make run` runs it).
    settings = servers.service
    container = Container(settings)
    model = ToolCallingModel(inputs=[])  # answers a question without a number at once
    history: list[Any] = []
    commands = []
    for i in range(SIZE):
        role = Role.USER if i % 2 == 0 else Role.ASSISTANT
        content = f"{CONTENTS[i % len(CONTENTS)]} (#{i})"
        history.append(HumanMessage(content) if role is Role.USER else AIMessage(content))
        commands += [NewMessage(tenant_id="bench", session_id=session, agent_id="bot",
                                role=role, content=content, message_id=f"h{i}",
                                created_at=f"2026-01-01T00:00:{i // 1000:02d}.{i % 1000:06d}Z")
                     for session in ("mw-local", "mw-remote")]
    for start in range(0, len(commands), 1000):
        container.saver.save_many(commands[start : start + 1000])

    def agent(*middleware: Any) -> Any:
        return create_agent(model, tools=[], system_prompt="You are ACME's support agent.",
                            middleware=list(middleware))

    def asking(bot: Any, session: str, before: list[Any]) -> Callable[[], object]:
        def ask() -> object:
            model.inputs.clear()
            question = HumanMessage(f"Anything else? {uuid.uuid4().hex[:6]}")
            return bot.invoke({"messages": [*before, question]},
                              {"configurable": {"thread_id": session}})
        return ask

    summariser = FakeListChatModel(responses=["The customer asked about an order."])
    summarising = agent(SummarizationMiddleware(summariser, trigger=("tokens", 6_000),
                                                keep=("tokens", 6_000)))
    bare = agent()
    local = agent(ConversationMemory(container, tenant_id="bench", agent_id="bot",
                                     window="8k"))
    app = producer(settings)
    remote = agent(ConversationMemory(app, tenant_id="bench", agent_id="bot",
                                      window="8k", context_timeout=30))
    runs = {
        "bare, new message": asking(bare, "mw-bare", []),
        "bare, 2,000 in state": asking(bare, "mw-bare", history),
        "summarisation": asking(summarising, "mw-sum", history),
        "ours, in-process": asking(local, "mw-local", []),
        "ours, remote": asking(remote, "mw-remote", []),
    }
    for run in runs.values():  # warm up: imports, connections, the worker's processes
        for _ in range(3):
            run()
    medians: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(3):  # alternated, so that this machine's noise falls on all alike
        for name, run in runs.items():
            medians[name].append(_median_ms(run, CALLS // 3))
    app.close()
    container.close()
    ms = {name: statistics.median(values) for name, values in medians.items()}
    anchor = ms["summarisation"] - ms["bare, 2,000 in state"]
    for mode, target in (("in-process", 1.0), ("remote", None)):
        ours = ms[f"ours, {mode}"] - ms["bare, new message"]
        ratio = ours / anchor
        report(row(
            f"agent memory: added per model call ({mode})", f"{ours:.2f} ms",
            f"{anchor:.2f} ms SummarizationMiddleware", ratio,
            f"<= {target}x SummarizationMiddleware" if target else "- (two Celery round trips)",
            ratio <= target if target else None))
