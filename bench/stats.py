"""The stats endpoint at 1 M stored messages with 16 concurrent clients, beside the same
aggregate as a raw SQL query over the stored messages, on the same data and concurrency."""
from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import text

TENANT = "bench-stats"
CONVERSATIONS = 25_000
PER_CONVERSATION = 40  # 1,000,000 messages
CLIENTS = 16
REQUESTS_PER_CLIENT = 40
RAW_PER_CLIENT = 2
RANGE = ("2026-08-26T00:00:00Z", "2026-11-24T00:00:00Z")  # 90 days, by day

# 25,000 conversations over 90 days, 8 agents, 3 models; first responses 1-120 s; every
# third conversation rated. The rows the service would have written at migration.
SEED = [
    f"""
    INSERT INTO conversations (id, tenant_id, session_id, agent_id, status, created_at,
                               closed_at, last_message_at, message_count, migrated_at)
    SELECT 'bc' || g, '{TENANT}', 'bs' || g, 'agent-' || (g % 8), 'closed',
           '2026-08-26'::timestamptz + g * interval '311 seconds',
           '2026-08-26'::timestamptz + g * interval '311 seconds' + interval '15 minutes',
           '2026-08-26'::timestamptz + g * interval '311 seconds'
               + {PER_CONVERSATION - 1} * interval '15 seconds' + (g % 120) * interval '1 second',
           {PER_CONVERSATION}, now()
    FROM generate_series(1, {CONVERSATIONS}) g
    """,
    f"""
    INSERT INTO messages (conversation_id, id, seq, tenant_id, role, content, tokens, encoding,
                          agent_id, created_at, metadata)
    SELECT 'bc' || g, 'm' || i, i, '{TENANT}',
           CASE WHEN i % 2 = 0 THEN 'user' ELSE 'assistant' END,
           'message ' || i || ' of conversation ' || g || ': how can I help you today?',
           8 + (i * g) % 40, 'cl100k_base', 'agent-' || (g % 8),
           '2026-08-26'::timestamptz + g * interval '311 seconds' + i * interval '15 seconds'
               + CASE WHEN i > 0 THEN (g % 120) * interval '1 second' ELSE interval '0' END,
           CASE WHEN i % 2 = 1 THEN jsonb_build_object(
               'model', (ARRAY['gpt-4o', 'gpt-4o-mini', 'claude'])[1 + g % 3]) END
    FROM generate_series(1, {CONVERSATIONS}) g, generate_series(0, {PER_CONVERSATION - 1}) i
    """,
    f"""
    INSERT INTO conversation_stats
    SELECT m.conversation_id, '{TENANT}', c.agent_id, count(*),
           count(*) FILTER (WHERE m.role = 'user'), count(*) FILTER (WHERE m.role = 'assistant'),
           coalesce(sum(m.tokens) FILTER (WHERE m.role = 'user'), 0),
           coalesce(sum(m.tokens) FILTER (WHERE m.role = 'assistant'), 0),
           extract(epoch FROM max(m.created_at) - min(m.created_at)),
           extract(epoch FROM min(m.created_at) FILTER (WHERE m.role = 'assistant')
                              - min(m.created_at) FILTER (WHERE m.role = 'user')),
           CASE WHEN substr(m.conversation_id, 3)::int % 3 = 0
                THEN 1 + substr(m.conversation_id, 3)::int % 5 END,
           min(m.created_at), max(m.created_at), c.closed_at,
           extract(epoch FROM c.closed_at - min(m.created_at)),
           max(m.metadata ->> 'model')
    FROM messages m JOIN conversations c ON c.id = m.conversation_id
    WHERE m.tenant_id = '{TENANT}'
    GROUP BY m.conversation_id, c.agent_id, c.closed_at
    """,
]

# The anchor: the endpoint's per-day figures computed straight from conversations and
# messages, as one would without a rollup.
RAW_AGGREGATE = text(f"""
    WITH per_conversation AS (
        SELECT c.id, date_trunc('day', min(m.created_at), 'UTC') AS day,
               count(*) AS messages,
               count(*) FILTER (WHERE m.role = 'user') AS messages_in,
               count(*) FILTER (WHERE m.role = 'assistant') AS messages_out,
               coalesce(sum(m.tokens) FILTER (WHERE m.role = 'user'), 0) AS tokens_in,
               coalesce(sum(m.tokens) FILTER (WHERE m.role = 'assistant'), 0) AS tokens_out,
               extract(epoch FROM max(m.created_at) - min(m.created_at)) AS duration,
               extract(epoch FROM min(m.created_at) FILTER (WHERE m.role = 'assistant')
                                  - min(m.created_at) FILTER (WHERE m.role = 'user')) AS first,
               extract(epoch FROM c.closed_at - min(m.created_at)) AS resolution
        FROM conversations c JOIN messages m ON m.conversation_id = c.id
        WHERE c.tenant_id = '{TENANT}' AND c.created_at >= '{RANGE[0]}'
          AND c.created_at < '{RANGE[1]}'
        GROUP BY c.id, c.closed_at
    )
    SELECT day, count(*), sum(messages), sum(messages_in), sum(messages_out), sum(tokens_in),
           sum(tokens_out),
           percentile_disc(ARRAY[0.5, 0.9]) WITHIN GROUP (ORDER BY duration),
           percentile_disc(ARRAY[0.5, 0.9]) WITHIN GROUP (ORDER BY first),
           percentile_disc(ARRAY[0.5, 0.9]) WITHIN GROUP (ORDER BY resolution)
    FROM per_conversation GROUP BY day ORDER BY day
""")


def seed(engine: Any, statements: list[str]) -> float:
    """Run the seeding statements in one transaction; the seconds it took."""
    began = time.perf_counter()
    with engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement))
    return time.perf_counter() - began


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def concurrent_latencies(clients: int, per_client: int,
                         make_worker: Callable[[], Callable[[], Any]]) -> list[float]:
    """Each client runs its calls back to back; all clients at once. Milliseconds."""
    latencies: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients)

    def client() -> None:
        call = make_worker()
        barrier.wait(timeout=60)
        mine = []
        for _ in range(per_client):
            began = time.perf_counter()
            call()
            mine.append((time.perf_counter() - began) * 1000)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    return sorted(latencies)


def percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def wait_for_http(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"the API did not answer on port {port} within {timeout} s")


def bench_stats(servers: Any, n: int, report: Callable[..., None], row: Callable[..., Any]) -> None:
    from conversation.bootstrap import Container

    settings = servers.settings()
    container = Container(settings)
    engine = container.engine
    seeded = seed(engine, SEED)
    began = time.perf_counter()
    container.statistics.aggregate()
    rollup_seconds = time.perf_counter() - began
    with engine.begin() as connection:
        connection.execute(text("ANALYZE"))
    print(f"stats: seeded {CONVERSATIONS * PER_CONVERSATION:,} messages in {seeded:.1f} s; "
          f"first rollup of all of them {rollup_seconds:.1f} s", flush=True)

    key = container.api_keys.create(TENANT)
    port = free_port()
    env = {**os.environ, "REDIS_URL": settings.redis_url, "DATABASE_URL": settings.database_url,
           "REDIS_KEY_PREFIX": settings.redis_key_prefix, "API_RATE_LIMIT": "1000000/minute",
           "CELERY_BROKER_URL": settings.broker_url,
           "CELERY_RESULT_BACKEND": settings.result_backend}
    api = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "2",
         "api.wsgi:app"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    path = f"/api/conversations/stats/{TENANT}?from={RANGE[0]}&to={RANGE[1]}&group_by=day"
    try:
        wait_for_http(port)

        def http_client() -> Callable[[], Any]:
            def call() -> None:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                connection.request("GET", path, headers={"Authorization": f"Bearer {key}"})
                response = connection.getresponse()
                body = response.read()
                assert response.status == 200, body[:200]
                connection.close()
            return call

        for _ in range(20):
            http_client()()  # warm both workers
        # One client, the cache emptied before each request: the cost of computing an answer.
        uncached = []
        for _ in range(20):
            container.stats_cache.invalidate()
            began = time.perf_counter()
            http_client()()
            uncached.append((time.perf_counter() - began) * 1000)
        uncached.sort()
        endpoint = concurrent_latencies(CLIENTS, REQUESTS_PER_CLIENT, http_client)
    finally:
        api.terminate()
        api.wait(timeout=30)

    def sql_client() -> Callable[[], Any]:
        def call() -> None:
            with engine.connect() as connection:
                assert len(connection.execute(RAW_AGGREGATE).all()) == 90
        return call

    sql_client()()  # warm the cache
    engine.dispose()
    raw = concurrent_latencies(CLIENTS, RAW_PER_CLIENT, sql_client)
    with engine.begin() as connection:  # leave the database as the next section expects it
        connection.execute(text(f"DELETE FROM conversations WHERE tenant_id = '{TENANT}'"))
        connection.execute(text(f"DELETE FROM messages WHERE tenant_id = '{TENANT}'"))
        connection.execute(text("DELETE FROM search_pending WHERE conversation_id LIKE 'bc%'"))
    container.close()
    p50, p99 = percentile(endpoint, 0.5), percentile(endpoint, 0.99)
    raw50, raw99 = percentile(raw, 0.5), percentile(raw, 0.99)
    report(row(
        f"stats endpoint, 1 M messages, {CLIENTS} clients, 90 days by day",
        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms (uncached, alone: p50 "
        f"{percentile(uncached, 0.5):.1f} ms)", f"raw SQL p50 {raw50:.0f} ms, p99 {raw99:.0f} ms",
        raw99 / p99, "p99 <= 50 ms", p99 <= 50))
