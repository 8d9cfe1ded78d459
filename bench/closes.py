"""Sessions closed at once, end to end, on the running service: from the first close published
to every message in PostgreSQL (the grace excluded: the service runs with `--grace 0`), after an
untimed warm-up, the best of ROUNDS (the no-op ceiling too).

- 1,000 sessions x 50 messages, one `session_closed` each: beside the one-task bound, Celery's
  no-op ceiling x 50 messages (a close is a task; what it moves is 50 messages).
- the same, in one `sessions_closed` task: beside psycopg's COPY of the same rows.
- 100 sessions x 500 messages, one `session_closed` each: beside COPY.
"""
from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from sqlalchemy import func, select, text

ROUNDS = 2


def bench_closes(run: Any, report: Callable[..., None], row: Callable[..., Any],
                 noop_ceiling: Callable[[Any, int], float], n: int) -> None:
    from bench.service import anchor_worker
    from conversation.bootstrap import Container

    container = Container(run.service)
    # The best of ROUNDS for the anchors and ours alike, as the other sections do (this
    # machine's noise only ever slows a round: one round each swung a row by 0.1x).
    with anchor_worker(run) as anchor:
        ceiling = max(noop_ceiling(anchor, min(n, 5_000)) for _ in range(ROUNDS))
    try:
        # Untimed, as the anchor's warm-up tasks are: the worker's processes connect to
        # PostgreSQL and load their scripts on their first closes and migrations.
        closed_at_once(container, 20, 10, batched=False)
        closed_at_once(container, 20, 10, batched=True)
        one_each = best(closed_at_once(container, 1_000, 50, batched=False)
                        for _ in range(ROUNDS))
        batched = best(closed_at_once(container, 1_000, 50, batched=True)
                       for _ in range(ROUNDS))
        long_ones = best(closed_at_once(container, 100, 500, batched=False)
                         for _ in range(ROUNDS))
        copy = copy_rate(container, long_ones.rows)
    finally:
        container.close()
    bound = ceiling * 50
    report(row("closes at once: 1,000 sessions x 50 messages, a session_closed each",
               f"{one_each.rate:,.0f} msg/s", f"{ceiling:,.0f} no-op tasks/s x 50 = "
               f"{bound:,.0f} msg/s", one_each.rate / bound, ">= 0.6x the one-task bound",
               one_each.rate >= 0.6 * bound))
    report(row("closes at once: 1,000 sessions x 50 messages, one sessions_closed",
               f"{batched.rate:,.0f} msg/s", f"COPY {copy:,.0f} rows/s", batched.rate / copy,
               ">= 0.3x COPY", batched.rate >= 0.3 * copy))
    report(row("closes at once: 100 sessions x 500 messages, a session_closed each",
               f"{long_ones.rate:,.0f} msg/s", f"COPY {copy:,.0f} rows/s", long_ones.rate / copy,
               ">= 0.5x COPY", long_ones.rate >= 0.5 * copy))


class Closed:
    def __init__(self, rate: float, rows: list[dict[str, Any]]) -> None:
        self.rate = rate
        self.rows = rows


def best(rounds: Iterable[Closed]) -> Closed:
    return max(rounds, key=lambda closed: closed.rate)


def closed_at_once(container: Any, sessions: int, per_session: int, *,
                   batched: bool) -> Closed:
    """Seed the sessions in Redis, close them all at once through the broker, and time it
    until every message is in PostgreSQL."""
    from conversation.adapters.postgres import message_row
    from conversation.adapters.postgres.schema import conversations, messages
    from conversation.domain.messages import NewMessage, Role
    from tests.workers import producer, wait_until

    tenant = f"bench-closes-{uuid.uuid4().hex[:6]}"
    ids = []
    for s in range(sessions):
        for start in range(0, per_session, 500):
            outcomes = container.saver.save_many([
                NewMessage(tenant_id=tenant, session_id=f"{tenant}-{s}", agent_id="bot",
                           role=Role.USER if i % 2 == 0 else Role.ASSISTANT,
                           content=f"Message {i} of session {s}: where is my parcel?",
                           message_id=f"c{s}-{i}",
                           created_at=f"2026-02-01T10:{i // 3600 % 60:02d}:"
                                      f"{i // 60 % 60:02d}.{i % 60:06d}Z")
                for i in range(start, min(per_session, start + 500))
            ])
        ids.append(outcomes[0].conversation_id)
    rows = [message_row(cid, tenant, seq, m) for cid in ids
            for seq, m in enumerate(container.active_store.messages(cid))]
    total = sessions * per_session

    def count(table: Any) -> int:
        with container.engine.connect() as connection:
            return int(connection.scalar(select(func.count()).select_from(table)
                                         .where(table.c.tenant_id == tenant)) or 0)

    app = producer(container.settings)
    started = time.perf_counter()
    if batched:
        app.send_task("conversation.sessions_closed", queue="conversation.sessions", kwargs={
            "sessions": [{"tenant_id": tenant, "session_id": f"{tenant}-{s}"}
                         for s in range(sessions)]})
    else:
        with app.producer_or_acquire() as publisher:
            for s in range(sessions):
                app.send_task("conversation.session_closed", queue="conversation.sessions",
                              kwargs={"tenant_id": tenant, "session_id": f"{tenant}-{s}"},
                              producer=publisher)
    published = time.perf_counter()
    # A conversation's row and its messages are written in one transaction: every
    # conversation row there, every message is. Counting the conversations (an index range of
    # at most a thousand rows) rather than the messages: counting up to 50,000 rows every 20 ms
    # cost PostgreSQL 7-12 ms a time, a third of a core taken from the migration it timed.
    wait_until(lambda: count(conversations) >= sessions, timeout=600, interval=0.02,
               what="every closed conversation in PostgreSQL")
    elapsed = time.perf_counter() - started
    app.close()
    assert count(messages) == total, "a conversation row without all its messages"
    assert all(container.active_store.get_conversation(cid) is None for cid in ids)
    print(f"  {sessions} x {per_session} closed ({'one task' if batched else 'a task each'}):"
          f" {elapsed:.2f}s (published in {published - started:.2f}s)", flush=True)
    return Closed(total / elapsed, rows)


def copy_rate(container: Any, rows: list[dict[str, Any]]) -> float:
    """psycopg 3 COPY FROM STDIN of the same message rows into a copy of the messages table,
    in one transaction; the best of ROUNDS."""
    from conversation.adapters.postgres import MESSAGE_COLUMNS

    engine = container.engine
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE IF EXISTS bench_close_messages"))
        connection.execute(text("CREATE TABLE bench_close_messages (LIKE messages INCLUDING ALL)"))
    best = 0.0
    columns = ", ".join(MESSAGE_COLUMNS)
    try:
        for _ in range(ROUNDS):
            with engine.begin() as connection:
                connection.execute(text("TRUNCATE bench_close_messages"))
            began = time.perf_counter()
            with engine.begin() as connection:
                cursor = connection.connection.driver_connection.cursor()
                with cursor.copy(f"COPY bench_close_messages ({columns}) FROM STDIN") as out:
                    for r in rows:
                        out.write_row(tuple(
                            orjson.dumps(r[c]).decode() if c == "metadata" and r[c] else r[c]
                            for c in MESSAGE_COLUMNS))
            best = max(best, len(rows) / (time.perf_counter() - began))
    finally:
        with engine.begin() as connection:
            connection.execute(text("DROP TABLE bench_close_messages"))
    return best
