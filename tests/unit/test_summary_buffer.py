"""The summary buffer: token buffer while the history fits; beyond, summary + newest messages
within the budget, the summary built incrementally, one worker at a time."""
from __future__ import annotations

import fakeredis
import pytest

from conversation.adapters.redis import RedisActiveStore, RedisLocks
from conversation.adapters.summariser import ChatModelSummariser, ExtractiveSummaryModel
from conversation.adapters.tokenizer import TiktokenCounter
from conversation.domain.messages import NewMessage, Role
from conversation.services.context import ContextBuilder
from conversation.services.save import MessageSaver
from conversation.services.summaries import SummaryBuilder, SummaryStatus
from tests.fakes import FakeRepository

COUNTER = TiktokenCounter()


class RecordingRequests:
    def __init__(self) -> None:
        self.requested: list[tuple[str, int]] = []

    def request(self, conversation_id: str, budget: int) -> None:
        self.requested.append((conversation_id, budget))


@pytest.fixture
def world():  # noqa: ANN201
    client = fakeredis.FakeRedis()
    active = RedisActiveStore(client, prefix="sb:")
    repository = FakeRepository()
    requests = RecordingRequests()
    context = ContextBuilder(active, repository, COUNTER,
                             windows={"128k": ("summary_buffer", 400)}, model_windows={},
                             summary_requests=requests)
    summariser = ChatModelSummariser(ExtractiveSummaryModel(),
                                     lambda text: COUNTER.count(text, "cl100k_base"))
    builder = SummaryBuilder(active, repository, COUNTER, summariser, RedisLocks(client, "sb:"))
    saver = MessageSaver(active, repository, COUNTER)
    return saver, context, builder, requests, client


def chat(saver: MessageSaver, turns: int, start: int = 0) -> str:
    conversation_id = ""
    for i in range(start, start + turns):
        for role, text in ((Role.USER, f"Question {i}: my parcel number {i} is late again."),
                           (Role.ASSISTANT, f"Answer {i}: parcel {i} will arrive tomorrow.")):
            conversation_id = saver.save(NewMessage(
                tenant_id="t", session_id="s", agent_id="a", role=role, content=text,
                message_id=f"{role}-{i}", created_at=f"2026-01-01T10:{i // 60:02d}:{i % 60:02d}Z",
            )).conversation_id
    return conversation_id


def context(builder: ContextBuilder, conversation_id: str) -> dict:
    return builder.get_context(tenant_id="t", conversation_id=conversation_id, window="128k")


def test_a_history_that_fits_is_a_plain_token_buffer(world) -> None:
    saver, builder, _, requests, _ = world
    conversation_id = chat(saver, 3)
    result = context(builder, conversation_id)
    assert (result["summary"], result["summary_pending"], result["truncated"]) == (None, False, False)
    assert len(result["messages"]) == 6 and requests.requested == []


def test_beyond_the_budget_summary_pending_then_summary_plus_tail(world) -> None:
    saver, builder, summaries, requests, _ = world
    conversation_id = chat(saver, 20)
    before = context(builder, conversation_id)
    assert before["summary_pending"] is True and before["summary"] is None
    assert before["tokens"] <= 400 and requests.requested == [(conversation_id, 400)]

    outcome = summaries.refresh(conversation_id, 400)
    assert outcome.status is SummaryStatus.UPDATED and outcome.folded > 0
    after = context(builder, conversation_id)
    assert after["summary_pending"] is False
    assert "parcel" in after["summary"]
    assert after["tokens"] <= 400
    # The kept messages are the newest ones, verbatim.
    assert after["messages"][-1]["content"] == "Answer 19: parcel 19 will arrive tomorrow."
    # Nothing more to fold until new messages push older ones out of the tail.
    assert summaries.refresh(conversation_id, 400).status is SummaryStatus.UP_TO_DATE


def test_the_summary_grows_incrementally_and_lags_are_pending(world) -> None:
    saver, builder, summaries, _, _ = world
    conversation_id = chat(saver, 20)
    first = summaries.refresh(conversation_id, 400)
    chat(saver, 10, start=20)
    lagging = context(builder, conversation_id)
    assert lagging["summary_pending"] is True and lagging["summary"] is not None
    second = summaries.refresh(conversation_id, 400)
    # Only the messages not yet covered are folded the second time.
    assert second.status is SummaryStatus.UPDATED and second.folded == 20
    assert first.folded + second.folded + len(context(builder, conversation_id)["messages"]) <= 60
    assert context(builder, conversation_id)["summary_pending"] is False


def test_two_workers_never_summarise_the_same_conversation_at_once(world) -> None:
    saver, _, summaries, _, client = world
    conversation_id = chat(saver, 20)
    locks = RedisLocks(client, "sb:")
    held = locks.acquire(f"summary:{conversation_id}", 60)
    assert held is not None
    assert summaries.refresh(conversation_id, 400).status is SummaryStatus.BUSY
    locks.release(f"summary:{conversation_id}", held)
    assert summaries.refresh(conversation_id, 400).status is SummaryStatus.UPDATED
