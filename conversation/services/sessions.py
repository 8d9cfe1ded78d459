"""Session lifecycle: a close schedules the migration; a reconnect within the grace cancels it.

Cancellation is not `revoke`: the close bumps the session's generation and the migration
carries it; a reconnect (or a new message) bumps it again, so the migration, when it runs,
finds its generation stale and does nothing.

Closes share timers (CONTRACT.md section 1): a close joins the bucket of the second its grace
ends in, and only the first close of that second schedules a timer task, for the end of that
second. A burst of a thousand closes within one second costs one timer task, not a thousand;
each session still moves no earlier than its grace after its own close, and less than a
second later. When the timer fires, the bucket's due sessions are handed to the migration
lead (DueMigrations), which migrates them in batches.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from conversation.domain.errors import DomainError
from conversation.domain.refusals import Refusal
from conversation.domain.messages import now_timestamp, parse_timestamp, utc_timestamp
from conversation.services.ports import (
    ActiveStoreUnavailable,
    ClosedSession,
    OutageCloses,
    Scheduler,
    Sessions,
)

if TYPE_CHECKING:
    from conversation.services.migration import MigrationOutcome
    from conversation.services.migration_lead import DueMigrations

log = logging.getLogger(__name__)

# A bucket and its marker outlive their timer by this much at least (they are deleted as the
# timer hands their sessions on; this only bounds what a lost timer leaves behind, which the
# cleanup sweep migrates anyway).
BUCKET_KEEP_SECONDS = 24 * 3600
# A second whose first close is already due: its timer waits this long for the closes that
# come with it (a burst, one task each), so they migrate together rather than a timer each.
# Short: it is the delay before the first of them moves, and the closes that come later are
# not lost to batching (their timers mark them ready, and the lead, still at work on the
# first ones, takes them in its next pass). 0.25 s was a third of 100 x 500 messages' time.
DUE_GATHER_SECONDS = 0.05
# ...unless its close came in a batch (sessions_closed) of this many closes of that second at
# least: the batch has gathered already.
GATHERED = 100
# A burst of closes that were due already (a grace of 0, or closes delivered late) arrives
# over a second or more, one task each, its timers firing one after another. Led at once,
# each timer's lead pass took the ~20 sessions that had come since the last (a pass's own cost,
# ~15 ms, paid ~50 times for a thousand closes of 50 messages), and the lead, busy through the
# burst, held one of the worker's two processes: the closes themselves went a third slower.
# So a timer that fires before its second's end and brings new sessions, while what is ready
# is not worth a pass yet (migration_lead.PASS_MESSAGES), is set again this much later
# instead of leading (no process waits meanwhile); one that brings nothing new, or whose
# second ends before it could fire again, leads. Each session still moves by its second's
# end, as the timer of a grace that had not passed would move it.
BURST_POLL_SECONDS = 0.1

CloseRequest = tuple[str, str, "str | None"]  # tenant_id, session_id, closed_at
# A bucket's member: "conversation_id:generation:closed epoch" (identifiers never hold ':',
# the contract, so it splits back unambiguously).


def parse_timer_member(member: str) -> tuple[str, int, float]:
    conversation_id, generation, closed_epoch = member.split(":")
    return conversation_id, int(generation), float(closed_epoch)


class SessionLifecycle:
    def __init__(
        self,
        active: Sessions,
        scheduler: Scheduler,
        grace_seconds: float,
        repository: OutageCloses | None = None,
        migrations: DueMigrations | None = None,
    ) -> None:
        self.active = active
        self.scheduler = scheduler
        self.grace_seconds = grace_seconds
        self.repository = repository
        self.migrations = migrations

    def close(
        self, tenant_id: str, session_id: str, closed_at: str | None = None
    ) -> ClosedSession | None:
        outcome = self.close_many([(tenant_id, session_id, closed_at)])[0]
        if isinstance(outcome, Refusal):
            raise outcome.error()
        return outcome

    @staticmethod
    def _close_moment(closed_at: str, received: float) -> str:
        """The producer's close time, but never later than the close arrived: a clock ahead
        (or a year 9999) would otherwise hold the migration, and its timer, until then."""
        moment = parse_timestamp(closed_at)
        if moment.timestamp() > received:
            moment = datetime.fromtimestamp(received, UTC)
        return utc_timestamp(moment)

    def close_many(
        self, requests: Sequence[CloseRequest], now: float | None = None
    ) -> list[ClosedSession | None | Refusal]:
        """Close sessions, each on its own: its result in its place (None when it had no
        conversation in Redis, a refusal for another tenant's session). A store that is down
        raises, for the task to retry the whole batch (closing again is harmless)."""
        stamp = now_timestamp()
        received = time.time() if now is None else now
        moments = [(t, s, self._close_moment(at, received) if at else stamp)
                   for t, s, at in requests]
        timed = []
        for tenant_id, session_id, moment in moments:
            # The bucket of the second the grace ends in; its timer fires at that second's end.
            epoch = parse_timestamp(moment).timestamp()
            timed.append((tenant_id, session_id, moment, f"{epoch:.6f}",
                          math.ceil(epoch + self.grace_seconds)))
        try:
            results, armed = self.active.close_sessions_into_timers(timed, self._keep_seconds())
        except ActiveStoreUnavailable:
            # Redis is down: the sessions' messages are in PostgreSQL now, close those; the
            # task retries (and dead-letters for a replay if Redis stays down), since dropping
            # the close would strand the Redis conversation until the idle sweep.
            for tenant_id, session_id, moment in moments:
                self._close_outage_conversations(tenant_id, session_id, moment)
            raise
        for (tenant_id, session_id, moment), result in zip(moments, results, strict=True):
            if result is None:
                # No conversation in Redis: whatever the session has is in PostgreSQL (written
                # during an outage), and ends with the session. With one in Redis, its
                # migration takes those over (absorb), so the common close touches no database.
                self._close_outage_conversations(tenant_id, session_id, moment)
                log.info("session %s has no active conversation: nothing to migrate", session_id)
        # The first close of a second schedules that second's one timer, for the end of the
        # second; or, when that close's grace has already passed (a grace of 0, or a close
        # delivered late), as soon as the closes arriving with it have joined it (DUE_GATHER).
        now = time.time() if now is None else now
        first_due: dict[int, float] = {}
        closes: dict[int, int] = {}
        for _tenant, _session, _moment, close_epoch, second in timed:
            due = float(close_epoch) + self.grace_seconds
            first_due[second] = min(first_due.get(second, second), due)
            closes[second] = closes.get(second, 0) + 1
        for second in armed:
            gather = 0.0 if closes[second] >= GATHERED else DUE_GATHER_SECONDS
            fire_at = min(second, now + gather) if first_due[second] <= now else second
            self.scheduler.schedule_close_timer(second, countdown=max(0.0, fire_at - now))
        # The store's refusals (another tenant's session), as values from here on.
        return [Refusal.of(r) if isinstance(r, DomainError) else r for r in results]

    def _keep_seconds(self) -> int:
        return int(self.grace_seconds) + BUCKET_KEEP_SECONDS

    def fire_timer(self, second: int, now: float | None = None) -> list[MigrationOutcome]:
        """A second's shared timer: its sessions whose grace has passed go to the migration
        lead, in batches; one whose grace has not (a timer early by another host's clock)
        stays in the bucket, whose timer is scheduled again for it. Idempotent: a timer run
        twice, or late, finds what it handed on already migrated (or stale after a reopen)."""
        assert self.migrations is not None, "the timer needs the migration lead"
        members = self.active.take_close_timer(second)
        # The time after the take: every member the take found was closed before it.
        now = time.time() if now is None else now
        due: list[tuple[str, int]] = []
        handed: list[str] = []
        early_until = 0.0
        for member in members:
            conversation_id, generation, closed_epoch = parse_timer_member(member)
            if closed_epoch + self.grace_seconds <= now:
                due.append((conversation_id, generation))
                handed.append(member)
            else:
                early_until = max(early_until, closed_epoch + self.grace_seconds)
        if early_until:
            # Not ours to move yet: the bucket keeps them and its timer is set again (its
            # marker too, so a close meanwhile does not schedule one more).
            self.active.arm_close_timers({second: []}, self._keep_seconds())
            self.scheduler.schedule_close_timer(second, countdown=early_until - now)
            log.warning("the timer of second %d fired %.3f s early for %d session(s): set again",
                        second, early_until - now, len(members) - len(due))
        if due:
            # Marked ready (durable) before leaving the bucket: a timer that dies in between is
            # run again by the broker and marks them again, which changes nothing.
            self.migrations.mark_ready(due)
            self.active.forget_close_timer_members(second, handed)
            if not early_until and now + BURST_POLL_SECONDS < second and self._wait_for_more(
                second
            ):
                return []
        # The bucket gathered this second's closes (or a burst's closes stopped coming): no
        # need for the lead to wait for more. A timer with nothing new still leads: it may be
        # the one set again for a burst, whose sessions are ready and wait for it.
        return self.migrations.lead(gather=False)

    def _wait_for_more(self, second: int) -> bool:
        """A timer that fired before its second's end (closes due already) and brought new
        sessions may be amid a burst (BURST_POLL_SECONDS): unless what is ready is worth a
        pass already, it is set again, BURST_POLL_SECONDS on, instead of leading now; the
        closes of its second meanwhile join its bucket (it is armed again) without a timer
        each. True when it was (or a close armed it since the take: that close's timer, due
        within DUE_GATHER_SECONDS, decides then)."""
        assert self.migrations is not None
        if self.migrations.worth_a_pass():
            return False
        if self.active.arm_close_timers({second: []}, self._keep_seconds()):
            self.scheduler.schedule_close_timer(second, countdown=BURST_POLL_SECONDS)
        log.debug("timer of second %d: a burst of due closes may go on, set again", second)
        return True

    def _close_outage_conversations(self, tenant_id: str, session_id: str, moment: str) -> None:
        if self.repository is None:
            return
        # Best effort: PostgreSQL being down must not stop the close in Redis.
        try:
            self.repository.close_active(tenant_id, session_id, moment)
        except Exception as exc:
            log.warning("could not close %s's outage conversations: %s", session_id, exc)

    def open(self, tenant_id: str, session_id: str) -> bool:
        """A reconnect: True when it cancelled a pending migration."""
        try:
            return self.active.open_session(tenant_id, session_id)
        except ActiveStoreUnavailable:
            return False  # nothing is pending in a store that is down
