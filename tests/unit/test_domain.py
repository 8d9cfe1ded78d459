"""Pure domain: window planning, statistics of a conversation, timestamps."""
from __future__ import annotations

import pytest

from config.settings import DEFAULT_MODEL_WINDOWS, DEFAULT_WINDOWS
from conversation.domain.context import UnknownWindow, plan_context
from conversation.domain.messages import Message, Role, utc_timestamp, parse_timestamp
from conversation.domain.stats import summarise_conversation


def plan(**kwargs):  # noqa: ANN003, ANN201
    values = {"model": None, "window": None, "max_tokens": None}
    values.update(kwargs)
    return plan_context(windows=DEFAULT_WINDOWS, model_windows=DEFAULT_MODEL_WINDOWS, **values)


@pytest.mark.parametrize(
    ("model", "window", "strategy", "budget"),
    [
        ("gpt-4", "8k", "token_buffer", 6000),
        ("gpt-4-32k", "32k", "token_buffer", 28000),
        ("gpt-4o", "128k", "summary_buffer", 120000),
        ("gpt-4o-mini", "128k", "summary_buffer", 120000),
    ],
)
def test_models_map_to_windows(model: str, window: str, strategy: str, budget: int) -> None:
    result = plan(model=model)
    assert (result.window, result.strategy, result.budget, result.warning) == (
        window, strategy, budget, None)


def test_an_unknown_model_gets_8k_and_a_warning() -> None:
    result = plan(model="my-own-llm")
    assert result.window == "8k" and result.budget == 6000
    assert "unknown model" in (result.warning or "")


def test_max_tokens_overrides_the_budget_and_window_wins_over_model() -> None:
    result = plan(model="gpt-4", window="32k", max_tokens=1234)
    assert (result.window, result.budget) == ("32k", 1234)
    with pytest.raises(UnknownWindow):
        plan(window="1m")


def msg(i: int, role: Role, at: str, tokens: int = 10, **metadata: object) -> Message:
    return Message(str(i), role, "x", at, tokens, "cl100k_base", metadata=dict(metadata))


def test_conversation_statistics_on_a_known_conversation() -> None:
    stats = summarise_conversation([
        msg(0, Role.SYSTEM, "2026-01-01T10:00:00.000000Z", 5),
        msg(1, Role.USER, "2026-01-01T10:00:10.000000Z", 7),
        msg(2, Role.ASSISTANT, "2026-01-01T10:00:25.000000Z", 11),
        msg(3, Role.USER, "2026-01-01T10:01:00.000000Z", 3),
        msg(4, Role.ASSISTANT, "2026-01-01T10:02:00.000000Z", 13, satisfaction=4),
    ])
    assert (stats.message_count, stats.user_messages, stats.assistant_messages) == (5, 2, 2)
    assert (stats.tokens_in, stats.tokens_out) == (10, 24)
    assert stats.duration_seconds == 120.0
    assert stats.first_response_seconds == 15.0
    assert stats.satisfaction == 4.0


def test_timestamps_are_fixed_width_utc_and_sort_as_instants() -> None:
    a = utc_timestamp(parse_timestamp("2026-01-01T12:00:00+02:00"))
    b = utc_timestamp(parse_timestamp("2026-01-01T10:30:00"))
    assert a == "2026-01-01T10:00:00.000000Z"
    assert a < b and len(a) == len(b)


def test_the_client_publishes_by_name_to_the_contract_queues() -> None:
    """conversation.client needs only celery: it names the task and its queue."""
    from conversation.client import ConversationClient

    class Recorder:
        sent: list = []

        def send_task(self, name, kwargs, queue, **options):  # noqa: ANN001, ANN201
            self.sent.append((name, queue, kwargs))

    app = Recorder()
    client = ConversationClient(app)  # type: ignore[arg-type]
    sent = client.save_message(tenant_id="t", session_id="s", agent_id="a", role="user",
                               content="hi")
    client.session_closed(tenant_id="t", session_id="s")
    assert app.sent == [
        ("conversation.save_message", "conversation.save",
         {"tenant_id": "t", "session_id": "s", "agent_id": "a", "role": "user",
          "content": "hi", "message_id": sent}),  # made by the client, to wait for it
        ("conversation.session_closed", "conversation.sessions",
         {"tenant_id": "t", "session_id": "s"}),
    ]


@pytest.mark.parametrize("score", [1e308, -1e308, 101, -100.5, float("inf"), float("nan"),
                                   pytest.param(10**400, id="10**400"), True, "4"])
def test_a_satisfaction_off_the_scale_is_not_a_rating(score: object) -> None:
    """Only a number within SATISFACTION_RANGE is a rating. Two conversations rated 1e308
    made a day's satisfaction_sum inf, and its average null for good: failed before the fix
    (1e308 and the others counted; 10**400 raised OverflowError)."""
    from conversation.domain.stats import Aggregate

    rated = summarise_conversation([msg(0, Role.USER, "2026-01-01T10:00:00Z", satisfaction=4)])
    stats = summarise_conversation([
        msg(0, Role.USER, "2026-01-01T10:00:00Z", satisfaction=2),
        msg(1, Role.ASSISTANT, "2026-01-01T10:00:05Z", satisfaction=score),
    ])
    assert stats.satisfaction == 2.0  # the last rating on the scale
    day = Aggregate()
    for conversation in (rated, stats, stats):
        day.add_started(conversation)
    assert day.measures()["satisfaction_avg"] == 2.667 and day.rated == 3
    # A stored conversation_stats row from before the fix is left out of the sums, too.
    from dataclasses import replace

    if isinstance(score, float | int) and not isinstance(score, bool):
        day.add_started(replace(stats, satisfaction=score))
        assert day.rated == 3 and day.measures()["satisfaction_avg"] == 2.667
