"""The save tasks' quick size check (`_surely_within`) never lets through a payload that
payload_bytes, the MAX_TASK_BYTES rule, would count past the limit."""
from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.base import payload_bytes
from tasks.conversation_tasks import _surely_within
from tests.integration.test_payload_fuzz import JSON


@settings(max_examples=500, deadline=None)
@given(payload=st.dictionaries(st.text(max_size=5), JSON, max_size=4),
       limit=st.integers(0, 400))
def test_surely_within_only_what_payload_bytes_keeps_within(payload: Any, limit: int) -> None:
    if _surely_within(payload, limit):
        assert payload_bytes(payload, limit) <= limit


def test_a_lone_surrogate_is_left_to_the_walk() -> None:
    assert not _surely_within({"content": "\ud800"}, 10**9)
