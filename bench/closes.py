"""Many short conversations closed at once, end to end: 1,000 sessions of 50 messages each,
one `session_closed` task per session through the broker, a real worker, until every message
is in PostgreSQL. The tasks bound it: the anchor is Celery's no-op ceiling on the same worker,
times 50 messages, and half that for the two tasks a session costs under the contract."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from sqlalchemy import func, select

SESSIONS = 1_000
PER_SESSION = 50
TENANT = "bench-closes"


def bench_closes(servers: Any, n: int, report: Callable[..., None], row: Callable[..., Any],
                 noop_rate: Callable[[Any], float]) -> None:
    from conversation.adapters.sql_schema import messages
    from conversation.bootstrap import Container
    from conversation.domain.messages import NewMessage, Role
    from tests.workers import producer, running_worker, wait_until

    settings = replace(servers.settings(), session_grace_seconds=0)
    ceiling = noop_rate(settings)
    container = Container(settings)
    for s in range(SESSIONS):
        container.saver.save_many([
            NewMessage(tenant_id=TENANT, session_id=f"close-{s}", agent_id="bot",
                       role=Role.USER if i % 2 == 0 else Role.ASSISTANT,
                       content=f"Message {i} of session {s}: where is my parcel?",
                       message_id=f"c{s}-{i}",
                       created_at=f"2026-02-01T10:{i // 60:02d}:{i % 60:02d}.000000Z")
            for i in range(PER_SESSION)
        ])
    total = SESSIONS * PER_SESSION

    def persisted() -> int:
        with container.engine.connect() as connection:
            return int(connection.scalar(select(func.count()).select_from(messages)
                                         .where(messages.c.tenant_id == TENANT)) or 0)

    app = producer(settings)
    with running_worker(settings, settings.var_dir / "bench-closes.log", concurrency=2,
                        name="bench-closes"):
        started = time.perf_counter()
        with app.producer_or_acquire() as publisher:
            for s in range(SESSIONS):
                app.send_task("conversation.session_closed", queue="conversation.sessions",
                              kwargs={"tenant_id": TENANT, "session_id": f"close-{s}"},
                              producer=publisher)
        wait_until(lambda: persisted() >= total, timeout=600, interval=0.05,
                   what="every closed conversation in PostgreSQL")
        elapsed = time.perf_counter() - started
    app.close()
    container.close()
    rate = total / elapsed
    bound = ceiling * PER_SESSION
    # The contract gives each session two tasks (its close, then its migration timer): at
    # Celery's no-op cost alone, that is half the one-task bound.
    report(row(f"closes end to end: {SESSIONS:,} sessions x {PER_SESSION} messages",
               f"{rate:,.0f} msg/s", f"{ceiling:,.0f} no-op tasks/s x {PER_SESSION} = "
               f"{bound:,.0f} msg/s (two tasks a session: {bound / 2:,.0f})", rate / bound,
               ">= 40,000 msg/s", rate >= 40_000))
