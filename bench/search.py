"""Search at 1 M stored messages: the search endpoint's query (full-text, ranked, highlighted)
beside the same search as a plain ILIKE scan, on the same data."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import text

TENANT = "bench-search"
CONVERSATIONS = 25_000
PER_CONVERSATION = 40
PLANTED = 50  # messages holding the rare phrase
REPEAT = 30

SEED = [
    f"""
    INSERT INTO conversations (id, tenant_id, session_id, agent_id, status, created_at,
                               message_count)
    SELECT 'sc' || g, '{TENANT}', 'ss' || g, 'agent-' || (g % 8), 'closed',
           '2026-08-26'::timestamptz + g * interval '311 seconds', {PER_CONVERSATION}
    FROM generate_series(1, {CONVERSATIONS}) g
    """,
    # Five words from a vocabulary of 3,000 per message: a word is in ~1 message of 600.
    f"""
    INSERT INTO messages (conversation_id, id, seq, tenant_id, role, content, tokens, encoding,
                          agent_id, created_at)
    SELECT 'sc' || g, 'm' || i, i, '{TENANT}',
           CASE WHEN i % 2 = 0 THEN 'user' ELSE 'assistant' END,
           format('Customer asks about order %s: term%s term%s term%s term%s term%s, thanks',
                  g, (g * 31 + i * 17) % 3000, (g * 7 + i * 131) % 3000,
                  (g * 13 + i * 3) % 3000, (g + i * 977) % 3000, (g * 101 + i) % 3000),
           20, 'cl100k_base', 'agent-' || (g % 8),
           '2026-08-26'::timestamptz + g * interval '311 seconds' + i * interval '15 seconds'
    FROM generate_series(1, {CONVERSATIONS}) g, generate_series(0, {PER_CONVERSATION - 1}) i
    """,
    f"""
    UPDATE messages SET content = content || ' and the purple giraffe ate my invoice'
    WHERE tenant_id = '{TENANT}' AND seq = 7 AND substr(conversation_id, 3)::int % 500 = 0
    """,
]


def p50_ms(work: Callable[[], Any]) -> float:
    work()  # warm
    times = []
    for _ in range(REPEAT):
        began = time.perf_counter()
        work()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def index_everything(container: Any, timeout: float = 1800.0) -> None:
    """Index every pending conversation. The running service's beat sends
    `conversation.index_search` too, and its worker may hold the indexer's lock
    (index_pending answers None): help until nothing is pending, whoever indexes it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if container.search_indexer.index_pending(max_passes=100) is None:
            time.sleep(0.2)
        with container.engine.connect() as connection:
            if not connection.scalar(text("SELECT EXISTS (SELECT 1 FROM search_pending)")):
                return
    raise TimeoutError(f"search_pending not empty after {timeout:.0f} s")


def bench_search(servers: Any, n: int, report: Callable[..., None], row: Callable[..., Any]) -> None:
    from conversation.bootstrap import Container
    from bench.stats import seed
    from conversation.queries.search import ConversationSearch, SearchFilters

    container = Container(servers.settings())
    engine = container.engine
    seeded = seed(engine, SEED)
    began = time.perf_counter()
    index_everything(container)
    indexing = time.perf_counter() - began
    with engine.begin() as connection:
        connection.execute(text("ANALYZE"))
    print(f"search: seeded {CONVERSATIONS * PER_CONVERSATION:,} messages in {seeded:.1f} s, "
          f"indexed them in {indexing:.1f} s (the bench and the service's own index_search "
          "task together, not the indexer alone)", flush=True)
    search = ConversationSearch(engine, container.tiers,
                                container.settings.search_languages)

    def ilike(term: str) -> Callable[[], Any]:
        statement = text(
            "SELECT conversation_id, id, content FROM messages WHERE tenant_id = :t "
            "AND content ILIKE :pattern ORDER BY created_at DESC LIMIT 20")

        def run() -> Any:
            with engine.connect() as connection:
                return connection.execute(statement,
                                          {"t": TENANT, "pattern": f"%{term}%"}).all()
        return run

    for label, query, pattern, expected in (
        ("rare phrase", '"purple giraffe"', "purple giraffe", PLANTED),
        ("common word", "term42", "term42", 20),
    ):
        def ours(query: str = query) -> Any:
            return search.search(TENANT, query, SearchFilters(), 20)

        found = ours()["items"]
        assert len(found) == min(20, expected), (label, len(found))
        mine, anchor = p50_ms(ours), p50_ms(ilike(pattern))
        report(row(f"search, 1 M messages, {label}", f"p50 {mine:.1f} ms",
                   f"ILIKE p50 {anchor:.1f} ms", anchor / mine, "p50 < 100 ms", mine < 100))
    container.close()
