"""The token buffer keeps exactly what LangChain's trim_messages keeps (property test)."""
from __future__ import annotations

import itertools
import json

from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.messages import (
    trim_messages,
)

from conversation.domain.context import select_tail
from conversation.domain.messages import Message, Role, chat_message
from conversation.langchain import to_langchain
from conversation.services.context import ContextBuilder
from tests.contract_tokens import COUNTER, ENCODING, ROLE_OF, lc_counter
from tests.fakes import FakeRepository, ListHistory, message_record


def stored_message(i: int, role: Role, text: str, name: str | None,
                   tool_calls: list | None = None, tool_call_id: str | None = None) -> Message:
    return Message(
        id=str(i), role=role, content=text, created_at=f"2026-01-01T00:00:{i:02d}.000000Z",
        tokens=COUNTER.message_cost(str(role), text, name, ENCODING, tool_calls, tool_call_id),
        encoding=ENCODING, name=name, tool_calls=tool_calls, tool_call_id=tool_call_id,
    )


texts = st.one_of(
    st.just(""),
    st.text(max_size=60),
    st.text(alphabet="abc héllo 世界 🙂\n", min_size=200, max_size=3000),
)
names = st.one_of(st.none(), st.just("bob"))
plain_message = st.tuples(st.sampled_from(list(Role)), texts, names)
# An assistant's turn of tool calls (one to three, content often empty), then their results,
# in any order (parallel calls answer in the order they finish).
# Arguments as models write them: OpenAI's compact JSON ('{"order":4521}'), json.dumps' spaced
# form (LangChain's), ASCII escapes. The service counts the stored text, so must the reference.
ARGUMENT_WRITERS = {
    "compact": lambda args: json.dumps(args, ensure_ascii=False, separators=(",", ":")),
    "spaced": lambda args: json.dumps(args, ensure_ascii=False),
    "ascii": lambda args: json.dumps(args),
}
tool_turn = st.tuples(
    st.one_of(st.just(""), texts),
    st.lists(st.tuples(st.sampled_from(["lookup_order", "search", "weather_in"]),
                       st.dictionaries(st.sampled_from(["order", "q", "city"]),
                                       st.one_of(texts, st.integers()), max_size=2),
                       texts, st.sampled_from(sorted(ARGUMENT_WRITERS))),
             min_size=1, max_size=3),
    st.randoms(use_true_random=False),
)
messages_strategy = st.lists(st.one_of(plain_message, tool_turn), max_size=30)


def expand(raw: list) -> list[Message]:
    """The generated items as stored messages: a tool turn becomes its assistant message and
    one tool message per call."""
    history: list[Message] = []
    for item in raw:
        if len(item) == 3 and isinstance(item[0], Role):
            history.append(stored_message(len(history), *item))
            continue
        content, calls, rng = item
        turn = len(history)
        tool_calls = [
            {"id": f"call_{turn}_{k}", "type": "function",
             "function": {"name": name, "arguments": ARGUMENT_WRITERS[writer](args)}}
            for k, (name, args, _, writer) in enumerate(calls)
        ]
        history.append(stored_message(turn, Role.ASSISTANT, content, None, tool_calls))
        results = [(f"call_{turn}_{k}", result) for k, (_, _, result, _) in enumerate(calls)]
        rng.shuffle(results)
        for call_id, result in results:
            history.append(stored_message(len(history), Role.TOOL, result, None, None, call_id))
    return history


class StaticStore:
    """An active store holding one conversation in memory."""

    def __init__(self, history: list[Message]) -> None:
        self._history = history

    def owned_history(self, conversation_id: str, expected: int = 64) -> tuple[str, ListHistory]:
        return "t", ListHistory(self._history)


def build(history: list[Message], budget: int) -> dict:
    builder = ContextBuilder(
        StaticStore(history),  # type: ignore[arg-type]
        FakeRepository(),
        COUNTER,
        windows={"8k": ("token_buffer", budget)},
        model_windows={},
    )
    return builder.get_context(tenant_id="t", conversation_id="c", window="8k")


@settings(max_examples=300, deadline=None)
@given(raw=messages_strategy, budget=st.integers(min_value=0, max_value=3000),
       system_first=st.booleans())
def test_kept_messages_equal_trim_messages(raw, budget, system_first) -> None:
    if system_first:
        raw = [(Role.SYSTEM, "You are a helpful assistant.", None), *raw]
    history = expand(raw)
    expected = trim_messages(
        [to_langchain(m) for m in history],
        max_tokens=budget,
        token_counter=lc_counter,
        strategy="last",
        include_system=True,
        start_on="human",
        allow_partial=False,
    )
    context = build(history, budget)
    assert "error" not in context
    assert [(m["role"], m["content"]) for m in context["messages"]] == [
        (ROLE_OF[type(m)], m.content) for m in expected
    ]
    if expected:
        assert context["tokens"] == lc_counter(expected)
    # Sent as they are: each entry is the stored message in Chat Completions' shape.
    by_id = {m.id: m for m in history}
    assert context["messages"] == [chat_message_of(by_id[m.id]) for m in expected]
    assert context["total_messages"] == len(history)


def chat_message_of(message: Message) -> dict:
    return chat_message(str(message.role), message.content, message.name, message.tool_calls,
                        message.tool_call_id)


def test_a_leading_system_message_is_kept_even_over_budget() -> None:
    big = "word " * 500
    history = [
        Message("0", Role.SYSTEM, big, "2026-01-01T00:00:00.000000Z",
                COUNTER.message_cost("system", big, None, ENCODING), ENCODING),
        Message("1", Role.USER, "hi", "2026-01-01T00:00:01.000000Z",
                COUNTER.message_cost("user", "hi", None, ENCODING), ENCODING),
    ]
    context = build(history, 100)
    assert [m["role"] for m in context["messages"]] == ["system"]
    assert context["tokens"] > 100
    assert context["truncated"] is True


def test_the_walk_reads_only_the_tail() -> None:
    """Cost grows with the window: a 10,000-message history is read ~window messages deep."""
    history = [
        Message(str(i), Role.USER if i % 2 == 0 else Role.ASSISTANT, "some words here",
                f"2026-01-01T00:00:00.{i:06d}Z", 10, ENCODING)
        for i in range(10_000)
    ]
    read: list[int] = []

    class CountingHistory(ListHistory):
        def newest_chunks(self, encoding=None):  # noqa: ANN001, ANN201
            for start in range(len(self._messages), 0, -16):
                chunk = self._messages[max(0, start - 16) : start][::-1]
                read.extend(1 for _ in chunk)
                yield [message_record(message) for message in chunk]

    class Store(StaticStore):
        def owned_history(
            self, conversation_id: str, expected: int = 64
        ) -> tuple[str, ListHistory]:
            return "t", CountingHistory(self._history)

    builder = ContextBuilder(Store(history), FakeRepository(), COUNTER,  # type: ignore[arg-type]
                             windows={"8k": ("token_buffer", 1000)}, model_windows={})
    context = builder.get_context(tenant_id="t", conversation_id="c", window="8k")
    # 99 fit (99 x 10 + 3 <= 1000); the oldest of them is an answer, so start_on drops it.
    assert len(context["messages"]) == 98
    assert context["messages"][0]["role"] == "user"
    assert len(read) <= 100 + 16  # the window, and the rest of the chunk it ended in


@settings(max_examples=300, deadline=None)
@given(costs=st.lists(st.integers(min_value=1, max_value=400), max_size=60),
       humans=st.lists(st.booleans(), min_size=60, max_size=60),
       cuts=st.lists(st.integers(min_value=0, max_value=60), max_size=6),
       budget=st.integers(min_value=0, max_value=6000),
       system_cost=st.one_of(st.none(), st.integers(min_value=1, max_value=800)))
def test_the_walk_keeps_the_same_whatever_the_chunks(costs, humans, cuts, budget,
                                                     system_cost) -> None:
    """A history hands its messages out in chunks of any size: the selection never depends on
    where they are cut."""
    bounds = [0, *sorted(cut for cut in cuts if cut <= len(costs)), len(costs)]
    chunks = [costs[a:b] for a, b in itertools.pairwise(bounds)]
    whole = select_tail([costs], humans.__getitem__, budget=budget, system_cost=system_cost)
    chunked = select_tail(chunks, humans.__getitem__, budget=budget, system_cost=system_cost)
    assert chunked == whole
    # And what it keeps is the longest tail within the budget that starts on a human message.
    remaining = budget - (system_cost + 3 if system_cost is not None else 0)
    fitting = max((k for k in range(len(costs) + 1) if 3 + sum(costs[:k]) <= remaining),
                  default=0)
    assert whole.kept == max((k for k in range(1, fitting + 1) if humans[k - 1]), default=0)
    assert whole.exhausted == (fitting == len(costs))


def test_the_reference_counts_the_arguments_as_stored() -> None:
    """OpenAI writes compact arguments ('{"order":"4521"}'); the service counts that text
    (tokens(function.arguments)), and so must the counter given to trim_messages: re-encoding
    the parsed args with json.dumps' spaces counted 27 tokens where the contract says 24."""
    from tests.contract_tokens import lc_cost

    for arguments in ('{"order":"4521","city":"Zürich"}', '{"order": 4521}',
                      '{"q":"caf\\u00e9"}', "not json"):
        call = {"id": "call_abc", "type": "function",
                "function": {"name": "lookup_order", "arguments": arguments}}
        stored = stored_message(1, Role.ASSISTANT, "", None, [call])
        by_hand = (3 + COUNTER.count("assistant", ENCODING) + 3
                   + COUNTER.count("call_abc", ENCODING) + COUNTER.count("lookup_order", ENCODING)
                   + COUNTER.count(arguments, ENCODING))
        assert stored.tokens == by_hand
        assert lc_cost(to_langchain(stored)) == by_hand, arguments
