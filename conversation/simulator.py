"""A traffic simulator: agents saving messages, asking for context and closing sessions,
through the broker by task name, as upstream services do (`conversation simulate`)."""
from __future__ import annotations

import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from celery import Celery

from config.celery import celery_config
from config.settings import Settings
from conversation.client import ConversationClient

QUESTIONS = [
    "My order has not arrived yet, can you check where it is?",
    "How do I reset my password?",
    "Can I change the delivery address of order {n}?",
    "The invoice shows the wrong VAT number.",
    "¿Puedo pagar con transferencia bancaria?",
    "I'd like to cancel my subscription.",
]
ANSWERS = [
    "Let me look that up for you. Could you give me the order number?",
    "Sure: open Settings, then Security, and choose 'Reset password'.",
    "Done. The new address will be used for the next delivery.",
    "Thanks for telling us; I have asked billing to issue a corrected invoice.",
    "Sí, aceptamos transferencias bancarias en euros.",
    "I'm sorry to see you go. Your subscription ends at the close of this month.",
]
AGENTS = ("support-bot", "sales-bot", "billing-bot")


def simulate(
    settings: Settings,
    *,
    tenants: int = 2,
    sessions: int = 6,
    turns: int = 5,
    close: bool = True,
    seed: int | None = None,
    around: datetime | None = None,
) -> dict[str, Any]:
    """Sessions start up to two hours before `around` (default: now)."""
    rng = random.Random(seed)
    app = Celery("conversation-simulator", set_as_current=False)
    app.config_from_object(celery_config(settings))
    client = ConversationClient(app)
    tenant_ids = ["demo"] + [f"tenant-{i}" for i in range(1, tenants)]
    started = time.monotonic()
    saved = contexts = closed = 0
    context_tokens: list[int] = []
    for s in range(sessions):
        tenant = tenant_ids[s % len(tenant_ids)]
        session = f"sim-{uuid.uuid4().hex[:10]}"
        agent = rng.choice(AGENTS)
        clock = (around or datetime.now(UTC)) - timedelta(minutes=rng.randint(1, 120))
        for turn in range(turns):
            i = rng.randrange(len(QUESTIONS))
            for role, text in (("user", QUESTIONS[i].format(n=1000 + s)), ("assistant", ANSWERS[i])):
                clock += timedelta(seconds=rng.randint(2, 40))
                metadata = {"satisfaction": rng.randint(3, 5)} if turn == turns - 1 and role == "assistant" else None
                client.save_message(
                    tenant_id=tenant, session_id=session, agent_id=agent, role=role,  # type: ignore[arg-type]
                    content=text, message_id=f"{session}-{turn}-{role}",
                    created_at=clock.isoformat(), metadata=metadata,
                )
                saved += 1
        # Read-your-writes: the context waits (at most 2 s) for the session's last message.
        context = client.get_context(tenant_id=tenant, session_id=session, model="gpt-4",
                                     wait_for_message_id=f"{session}-{turns - 1}-assistant"
                                     if turns else None)
        contexts += 1
        context_tokens.append(int(context.get("tokens", 0)))
        if close:
            client.session_closed(tenant_id=tenant, session_id=session)
            closed += 1
    return {
        "tenants": tenant_ids,
        "sessions": sessions,
        "messages_saved": saved,
        "contexts_read": contexts,
        "context_tokens": context_tokens,
        "sessions_closed": closed,
        "seconds": round(time.monotonic() - started, 2),
    }
