"""Per-conversation statistics, computed from its messages (pure)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from conversation.domain.messages import Message, Role, parse_timestamp


@dataclass(frozen=True)
class ConversationStats:
    message_count: int
    user_messages: int
    assistant_messages: int
    tokens_in: int
    tokens_out: int
    duration_seconds: float
    first_response_seconds: float | None
    satisfaction: float | None
    started_at: str | None
    ended_at: str | None


def summarise_conversation(messages: Sequence[Message]) -> ConversationStats:
    """Counts, tokens, duration, first-response time and the last satisfaction score given.

    Tokens in are what users sent, tokens out what assistants answered. The first response is
    the delay from the first user message to the first assistant message after it. Satisfaction
    is the last numeric `metadata.satisfaction` seen (the upstream's rating of the conversation).
    """
    user = [m for m in messages if m.role is Role.USER]
    assistant = [m for m in messages if m.role is Role.ASSISTANT]
    started = parse_timestamp(messages[0].created_at) if messages else None
    ended = parse_timestamp(messages[-1].created_at) if messages else None
    first_response = None
    if user:
        first_question = parse_timestamp(user[0].created_at)
        for message in assistant:
            answered = parse_timestamp(message.created_at)
            if answered >= first_question:
                first_response = (answered - first_question).total_seconds()
                break
    satisfaction = None
    for message in messages:
        score = message.metadata.get("satisfaction") if message.metadata else None
        if isinstance(score, int | float) and not isinstance(score, bool):
            satisfaction = float(score)
    return ConversationStats(
        message_count=len(messages),
        user_messages=len(user),
        assistant_messages=len(assistant),
        tokens_in=sum(m.tokens for m in user),
        tokens_out=sum(m.tokens for m in assistant),
        duration_seconds=(ended - started).total_seconds() if started and ended else 0.0,
        first_response_seconds=first_response,
        satisfaction=satisfaction,
        started_at=messages[0].created_at if messages else None,
        ended_at=messages[-1].created_at if messages else None,
    )
