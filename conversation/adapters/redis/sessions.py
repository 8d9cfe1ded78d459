"""Sessions in Redis: resolve, close (into the shared close timers), open, release."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from conversation.adapters.redis import lua
from conversation.adapters.redis.base import RedisStoreBase
from conversation.adapters.redis.calls import _run_pipeline
from conversation.adapters.redis.codec import _session_state, _text
from conversation.adapters.redis.keys import RELEASED_SESSION_SECONDS
from conversation.adapters.redis.statuses import Applied, CloseStatus, OpenStatus, ResolveStatus
from conversation.domain.errors import ForeignSession
from conversation.domain.messages import parse_timestamp
from conversation.services.ports import ClosedSession, SessionState


class RedisSessions(RedisStoreBase):
    """A session's conversation, its closes and the shared close timers."""

    def resolve_session(
        self,
        tenant_id: str,
        session_id: str,
        candidate_conversation_id: str | None,
        message_at: str | None = None,
        *,
        confirmed: bool = True,
    ) -> tuple[str | None, bool]:
        """The session's conversation and whether it was just set to the candidate. Without
        `confirmed`, a session with no conversation gets none: (None, False) then asks the
        caller to check for a redelivery first."""
        status, conversation_id = self._resolve_status(
            tenant_id, session_id, candidate_conversation_id, message_at, confirmed=confirmed)
        return conversation_id, status is ResolveStatus.SET

    def _resolve_status(
        self,
        tenant_id: str,
        session_id: str,
        candidate_conversation_id: str | None,
        message_at: str | None,
        *,
        confirmed: bool,
    ) -> tuple[ResolveStatus, str | None]:
        """The resolve script's status (SET, FOUND or UNCONFIRMED) and conversation."""
        status, conversation_id = self._resolve(
            keys=[self.keys.session_mapping(session_id), self.keys.session_state(session_id)],
            args=[tenant_id, candidate_conversation_id or "", message_at or "",
                  "1" if confirmed else "0"],
        )
        resolved = ResolveStatus(int(status))
        if resolved is ResolveStatus.FOREIGN_SESSION:
            raise ForeignSession(f"session {session_id} belongs to another tenant")
        return resolved, _text(conversation_id) or None

    def close_session(
        self, tenant_id: str, session_id: str, closed_at: str
    ) -> ClosedSession | None:
        closed = self.close_sessions([(tenant_id, session_id, closed_at)])[0]
        if isinstance(closed, ForeignSession):
            raise closed
        return closed

    def close_sessions(
        self, requests: Sequence[tuple[str, str, str]]
    ) -> list[ClosedSession | None | ForeignSession]:
        """Close many sessions (tenant, session, closed_at) in one pipelined round trip, then
        index them for the lost-timer sweep in one more. Each result in its place: the closed
        session, None (no conversation), or the refusal of another tenant's session."""
        def build(pipe: Any) -> None:
            for tenant_id, session_id, closed_at in requests:
                keys = [self.keys.session_mapping(session_id), self.keys.session_state(session_id)]
                pipe.evalsha(self._close.sha, len(keys), *keys, tenant_id, closed_at)

        replies = _run_pipeline(self.client, build, lua.CLOSE_SESSION) if requests else []
        results: list[ClosedSession | None | ForeignSession] = []
        swept: dict[str, float] = {}
        for (_, session_id, closed_at), (status, conversation_id, generation) in zip(
            requests, replies, strict=True
        ):
            closed = CloseStatus(int(status))
            if closed is CloseStatus.FOREIGN_SESSION:
                results.append(ForeignSession(f"session {session_id} belongs to another tenant"))
            elif closed is CloseStatus.NO_CONVERSATION:
                results.append(None)
            else:
                results.append(ClosedSession(_text(conversation_id), int(generation)))
                swept[session_id] = parse_timestamp(closed_at).timestamp()
        if swept:
            self.client.zadd(self.keys.closed_sessions, swept)
        return results

    def close_sessions_into_timers(
        self, requests: Sequence[tuple[str, str, str, str, int]], keep_seconds: int
    ) -> tuple[list[ClosedSession | None | ForeignSession], list[int]]:
        """Close sessions (tenant, session, closed_at, closed epoch as text, the second their
        grace ends in) and put each closed one in its second's timer bucket: the results in
        place, and the seconds whose timer this armed. One pipelined round trip on standalone
        Redis; on a cluster, the closes, then the buckets (other slots)."""
        if self.cluster:
            closed = self.close_sessions([(t, s, at) for t, s, at, _, _ in requests])
            members: dict[int, list[str]] = {}
            for (_, _, _, epoch, second), result in zip(requests, closed, strict=True):
                if isinstance(result, ClosedSession):
                    members.setdefault(second, []).append(
                        f"{result.conversation_id}:{result.generation}:{epoch}")
            return closed, self.arm_close_timers(members, keep_seconds)

        def build(pipe: Any) -> None:
            for tenant_id, session_id, closed_at, epoch, second in requests:
                keys = [self.keys.session_mapping(session_id), self.keys.session_state(session_id),
                        self.keys.closed_sessions, self.keys.close_bucket(second),
                        self.keys.close_timer(second)]
                pipe.evalsha(self._close_into_timer.sha, len(keys), *keys, tenant_id, closed_at,
                             session_id, epoch, keep_seconds)

        replies = _run_pipeline(self.client, build, lua.CLOSE_INTO_TIMER) if requests else []
        results: list[ClosedSession | None | ForeignSession] = []
        armed: list[int] = []
        for request, reply in zip(requests, replies, strict=True):
            status = CloseStatus(int(reply[0]))
            if status is CloseStatus.FOREIGN_SESSION:
                results.append(ForeignSession(f"session {request[1]} belongs to another tenant"))
            elif status is CloseStatus.NO_CONVERSATION:
                results.append(None)
            else:
                results.append(ClosedSession(_text(reply[1]), int(reply[2])))
                if int(reply[3]) == Applied.APPLIED and request[4] not in armed:
                    armed.append(request[4])
        return results, armed

    def arm_close_timers(
        self, members: Mapping[int, Sequence[str]], keep_seconds: int
    ) -> list[int]:
        """Add closed sessions to their second's bucket; the seconds whose timer this armed
        (the first close of a second: the caller schedules its one timer task)."""
        seconds = list(members)

        def build(pipe: Any) -> None:
            for second in seconds:
                keys = [self.keys.close_bucket(second), self.keys.close_timer(second)]
                pipe.evalsha(self._arm_timer.sha, len(keys), *keys, keep_seconds,
                             *members[second])

        replies = _run_pipeline(self.client, build, lua.ARM_CLOSE_TIMER) if seconds else []
        return [second for second, armed in zip(seconds, replies, strict=True)
                if int(armed) == Applied.APPLIED]

    def take_close_timer(self, second: int) -> list[str]:
        """A second's timer fired: disarm it and read its bucket (left in place until each
        member is handed on, so a timer that dies meanwhile loses nothing)."""
        keys = [self.keys.close_bucket(second), self.keys.close_timer(second)]
        return sorted(_text(m) for m in self._take_timer(keys=keys))

    def forget_close_timer_members(self, second: int, members: Sequence[str]) -> None:
        if members:
            self.client.srem(self.keys.close_bucket(second), *members)

    def closed_sessions_before(self, moment: float, limit: int) -> list[str]:
        """Sessions closed before `moment` (epoch seconds) whose migration is not done."""
        ids = self.client.zrangebyscore(self.keys.closed_sessions, "-inf", moment, 0, limit)
        return [_text(i) for i in ids]

    def forget_closed_session(self, session_id: str) -> None:
        self.client.zrem(self.keys.closed_sessions, session_id)

    def open_session(self, tenant_id: str, session_id: str) -> bool:
        status = OpenStatus(int(self._open(keys=[self.keys.session_state(session_id)],
                                           args=[tenant_id])))
        if status is OpenStatus.FOREIGN_SESSION:
            raise ForeignSession(f"session {session_id} belongs to another tenant")
        return status is OpenStatus.REOPENED

    def session_state(self, session_id: str) -> SessionState | None:
        return _session_state(self.client.hgetall(self.keys.session_state(session_id)))

    def session_states(self, session_ids: Sequence[str]) -> list[SessionState | None]:
        pipe = self.client.pipeline(transaction=False)
        for session_id in session_ids:
            pipe.hgetall(self.keys.session_state(session_id))
        return [_session_state(state) for state in pipe.execute()]

    def session_conversation(self, tenant_id: str, session_id: str) -> str | None:
        # The state hash carries the mapping's conversation id: the scripts set and clear both
        # together, so one read answers.
        state = self.session_state(session_id)
        if state is None or state.tenant_id != tenant_id:
            return None
        return state.conversation_id

    def release_session(self, session_id: str, conversation_id: str, generation: int) -> bool:
        return self.release_sessions([(session_id, conversation_id, generation)])[0]

    def release_sessions(self, sessions: Sequence[tuple[str, str, int]]) -> list[bool]:
        """Release many migrated sessions (session, conversation, generation), each only if
        still at that conversation and generation: two pipelined round trips in all (a burst
        of a thousand closes paid two each before)."""
        if not sessions:
            return []

        def build(pipe: Any) -> None:
            for session_id, conversation_id, generation in sessions:
                keys = [self.keys.session_mapping(session_id), self.keys.session_state(session_id)]
                pipe.evalsha(self._release.sha, len(keys), *keys, conversation_id, generation,
                             RELEASED_SESSION_SECONDS)

        released = [int(r) == Applied.APPLIED
                    for r in _run_pipeline(self.client, build, lua.RELEASE_SESSION)]
        gone = [s for (s, _, _), done in zip(sessions, released, strict=True) if done]
        if gone:
            pipe = self.client.pipeline(transaction=False)
            pipe.srem(self.keys.active_sessions, *gone)
            pipe.zrem(self.keys.closed_sessions, *gone)
            pipe.execute()
        return released
