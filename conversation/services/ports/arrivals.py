"""Waiting for a message to be stored (get_context's wait_for_message_id)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class ArrivalListener(Protocol):
    def wait(self, seconds: float) -> bool:
        """True on the message's announcement (it is stored); False after `seconds`, or early
        for another reason (look again)."""

    def close(self) -> None: ...


class Arrivals(Protocol):
    def listen_for(self, tenant_id: str, message_id: str) -> ArrivalListener:
        """Listen for the message's announcement (subscribed once this returns): a save
        into the active tier announces it, `announce_saved` does for one stored elsewhere."""


class Announcements(Arrivals, Protocol):
    """Both ends of the announcements (what the contract suite checks)."""

    def announce_saved(self, tenant_id: str, message_ids: Sequence[str]) -> None: ...
