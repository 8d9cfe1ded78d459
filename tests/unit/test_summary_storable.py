"""A summary is model output, not validated input: a NUL in it (a model can emit one, JSON's
\\u0000) was stored in Redis as is, and the conversation's migration then failed in PostgreSQL
(json_to_recordset: "\\u0000 cannot be converted to text"; text columns hold no NUL), so the
conversation was quarantined instead of persisted. What neither tier can store is dropped."""
from __future__ import annotations

import orjson
from langchain_core.language_models.fake_chat_models import FakeListChatModel

from conversation.adapters.summariser import ChatModelSummariser
from conversation.domain.messages import Message, Role, text_problem


def test_a_summary_holds_only_text_both_tiers_can_store() -> None:
    model = FakeListChatModel(responses=["The customer\x00 asked for a refund \ud800twice."])
    summariser = ChatModelSummariser(model, lambda text: len(text.split()))
    history = [Message("m1", Role.USER, "refund please", "2026-12-01T00:00:00.000000Z", 3,
                       "cl100k_base")]
    summary = summariser.summarise(None, history, max_tokens=100)
    assert summary == "The customer asked for a refund twice."
    assert text_problem(summary) is None
    orjson.dumps(summary)  # the Redis codec takes it
