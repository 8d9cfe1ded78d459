"""Sessions in the active tier: closes into the shared close timers, reopens."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from conversation.domain.errors import ForeignSession
from conversation.services.ports.values import ClosedSession


class Sessions(Protocol):
    """A session's closes and reopens. A close bumps the session's generation (a migration
    scheduled by it carries that generation); a reopen bumps it again, making it stale."""

    def close_sessions_into_timers(
        self, requests: Sequence[tuple[str, str, str, str, int]], keep_seconds: int
    ) -> tuple[list[ClosedSession | None | ForeignSession], list[int]]:
        """Close (tenant, session, closed_at, closed epoch, second) and add each closed one
        to its second's bucket as "conversation_id:generation:closed epoch": the results in
        place (None: no conversation), and the seconds whose timer it armed (the first
        close of a second arms it; a timer armed stays armed until taken)."""

    def arm_close_timers(
        self, members: Mapping[int, Sequence[str]], keep_seconds: int
    ) -> list[int]:
        """Add members to their second's bucket; the seconds whose shared timer this armed."""

    def take_close_timer(self, second: int) -> list[str]:
        """Disarm a second's timer and read its bucket's members (left in the bucket)."""

    def forget_close_timer_members(self, second: int, members: Sequence[str]) -> None: ...

    def open_session(self, tenant_id: str, session_id: str) -> bool:
        """A reconnect: True when it reopened a closed session. Raises ForeignSession."""
