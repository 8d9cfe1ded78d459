"""Ten times the data (`python -m bench --scale`, `make bench-scale`; not part of `make bench`).

One database of the bench's own (`bench_scale` on the service's PostgreSQL, migrated by
Alembic, dropped at the end) is loaded with COPY to 1 M messages, measured, grown to 10 M
and measured again in the same run; each 10 M figure is reported beside its 1 M value and its
goal (issue 18: stats p99 <= 50 ms, search p50 <= 100 ms, every figure <= 2x its 1 M value).

The data: 50 tenants whose sizes follow Zipf's law (tenant i has 1/(i+1) of the traffic: the
largest holds ~22% of the messages, the smallest ~0.4%, as a few big customers and a long tail
do), 200 agents shared out by tenant size (at least one each), 90 days, conversations of
log-normal length (median ~15 messages, mean ~20, 2 to 400), contents drawn from a pool of
texts made of a Zipf-distributed vocabulary. The 9 M messages of the growth are 9 times more
conversations over the same 90 days (ten times the traffic), not a longer history. Every
figure is read for the largest tenant (the worst case).

Written as the service writes them: conversations, messages (the metadata's model on
assistant messages), conversation_stats as migration computes them (the triggers note the
changed days; the rollup, `Statistics.aggregate`, then builds stats_daily), message_search as
`conversation.index_search` would (the same `message_search_vector`, computed once per
distinct text of the pool and copied with each message; search_pending emptied, as after the
indexer). session_owners is not written (none of the measured reads uses it). After each load:
VACUUM ANALYZE (the statistics autovacuum would gather, and the GIN pending list merged).

The context rows read one conversation of 10,000 messages saved through the service and
migrated to PostgreSQL (as bench_context's "from PostgreSQL" rows), the same one at both
sizes.

BENCH_SCALE_MESSAGES (default 10,000,000) sets the large size; the small one is a tenth.
"""
from __future__ import annotations

import http.client
import math
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from sqlalchemy import event, text

from bench.stats import concurrent_latencies, free_port, percentile, wait_for_http
from config.settings import PROJECT_ROOT

DATABASE = "bench_scale"
TENANTS = 50
AGENTS = 200
MODELS = ("gpt-4o", "gpt-4o-mini", "claude")
DAYS = 90
START = datetime(2026, 8, 26, tzinfo=UTC).timestamp()
RANGE = ("2026-08-26T00:00:00Z", "2026-11-24T00:00:00Z")
CLIENTS = 16
REQUESTS_PER_CLIENT = 40
SEARCH_REPEAT = 30
CONTEXT_REPEAT = 20
POOL = 20_000  # distinct message texts
RARE = "purple giraffe"
RARE_EVERY = 5_000  # one message of the largest tenant in 5,000 holds the rare phrase
COMMON = "refund"  # in ~7% of messages (the loader prints the share)
CONVERSATIONS_PER_COPY = 20_000
LIST_LIMIT = 50
NULL = "\\N"  # COPY text format
PLANS = PROJECT_ROOT / "var" / "bench-scale-plans.txt"

# Support talk first (the frequent words), then a long tail of product codes.
WORDS = (
    "order delivery the my is to and please it you your a for can not when of refund "
    "account payment card address parcel package help thanks hello item received week "
    "tracking number invoice cancel change update email password login subscription "
    "shipping return warehouse carrier tomorrow today yesterday charged twice wrong size "
    "colour broken damaged missing store voucher discount price plan upgrade downgrade app "
    "error message support agent manager call back phone confirm details sorry delay late "
    "early monday tuesday wednesday thursday friday weekend morning afternoon evening "
    "office home signature courier label replacement exchange warranty receipt bank "
    "transfer pending approved declined balance credit limit statement download mobile "
    "website checkout basket stock available soon restock notify preference newsletter "
    "unsubscribe privacy data delete close open ticket reference case escalate resolved"
).split()
TAIL = [f"sku{i}" for i in range(5_000)]


def zipf_weights(count: int, offset: float = 1.0) -> list[float]:
    return [1.0 / (i + offset) for i in range(count)]


def make_pool(rng: random.Random) -> list[str]:
    vocabulary = WORDS + TAIL
    weights = zipf_weights(len(vocabulary), 8.0)
    cumulative = list(_accumulate(weights))
    pool = []
    for _ in range(POOL):
        length = max(3, min(60, int(rng.lognormvariate(2.4, 0.6))))
        pool.append(" ".join(rng.choices(vocabulary, cum_weights=cumulative, k=length)))
    return pool


def _accumulate(values: list[float]) -> Iterator[float]:
    total = 0.0
    for value in values:
        total += value
        yield total


@dataclass
class Dataset:
    """What the loader wrote so far, and what the measurements need of it."""

    tenants: list[str]
    agents: dict[str, list[str]]
    tenant_weights: list[float]
    pool: list[str] = field(default_factory=list)
    vectors: list[str] = field(default_factory=list)
    planted: list[str] = field(default_factory=list)
    planted_vectors: list[str] = field(default_factory=list)
    conversations: int = 0
    messages: int = 0
    rare_in_largest: int = 0
    common_share: float = 0.0


def make_dataset() -> Dataset:
    tenants = [f"t{i:02d}" for i in range(TENANTS)]
    weights = zipf_weights(TENANTS)
    total = sum(weights)
    # Agents by tenant size, at least one each; the rest to the largest tenants.
    counts = [max(1, int(AGENTS * w / total)) for w in weights]
    i = 0
    while sum(counts) < AGENTS:
        counts[i % TENANTS] += 1
        i += 1
    agents = {t: [f"{t}-agent{j}" for j in range(c)] for t, c in zip(tenants, counts)}
    return Dataset(tenants, agents, weights)


def _ts(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def conversation_rows(data: Dataset, first: int, count: int, seed: int) -> Iterator[
        tuple[list[str], list[str], list[str], list[str]]]:
    """COPY text lines for conversations, messages, message_search and conversation_stats,
    CONVERSATIONS_PER_COPY conversations at a time."""
    rng = random.Random(seed)
    cumulative = list(_accumulate(data.tenant_weights))
    conversations, messages, search, stats = [], [], [], []
    for k in range(first, first + count):
        tenant = rng.choices(data.tenants, cum_weights=cumulative)[0]
        agent = rng.choice(data.agents[tenant])
        model = MODELS[k % len(MODELS)]
        cid = f"sc{k}"
        length = max(2, min(400, int(rng.lognormvariate(2.7, 0.8))))
        at = START + rng.random() * DAYS * 86_400
        started = at
        first_response = None
        tokens_in = tokens_out = 0
        for seq in range(length):
            if seq:
                at += rng.uniform(5, 90)
            user = seq % 2 == 0
            if tenant == data.tenants[0] and rng.randrange(RARE_EVERY) == 0:
                index = rng.randrange(len(data.planted))
                content, vector = data.planted[index], data.planted_vectors[index]
                data.rare_in_largest += 1
            else:
                index = rng.randrange(POOL)
                content, vector = data.pool[index], data.vectors[index]
            tokens = 4 + len(content) // 4
            if user:
                tokens_in += tokens
            else:
                tokens_out += tokens
                if first_response is None:
                    first_response = at - started
            created = _ts(at)
            metadata = "\\N" if user else f'{{"model": "{model}"}}'
            messages.append(
                f"{cid}\tm{seq}\t{seq}\t{tenant}\t{'user' if user else 'assistant'}\t{content}\t"
                f"\\N\t{tokens}\tcl100k_base\t{agent}\t{created}\t{metadata}\t\\N\t\\N\n")
            search.append(f"{cid}\tm{seq}\t{tenant}\t{created}\t{vector}\n")
        closed = at + 600
        conversations.append(
            f"{cid}\t{tenant}\tss{k}\t{agent}\tclosed\t{_ts(started)}\t{_ts(closed)}\t{_ts(at)}\t"
            f"{length}\t\\N\t\\N\t{_ts(closed)}\n")
        users = (length + 1) // 2
        satisfaction = str(1 + k % 5) if k % 3 == 0 else "\\N"
        stats.append(
            f"{cid}\t{tenant}\t{agent}\t{length}\t{users}\t{length - users}\t{tokens_in}\t"
            f"{tokens_out}\t{at - started}\t{NULL if first_response is None else first_response}\t"
            f"{satisfaction}\t{_ts(started)}\t"
            f"{_ts(at)}\t{_ts(closed)}\t{closed - started}\t{model}\n")
        data.messages += length
        if len(conversations) >= CONVERSATIONS_PER_COPY:
            yield conversations, messages, search, stats
            conversations, messages, search, stats = [], [], [], []
    if conversations:
        yield conversations, messages, search, stats


COPIES = (
    ("conversations", "id, tenant_id, session_id, agent_id, status, created_at, closed_at, "
     "last_message_at, message_count, summary, summary_through, migrated_at"),
    ("messages", "conversation_id, id, seq, tenant_id, role, content, name, tokens, encoding, "
     "agent_id, created_at, metadata, tool_calls, tool_call_id"),
    ("message_search", "conversation_id, message_id, tenant_id, created_at, vector"),
    ("conversation_stats", "conversation_id, tenant_id, agent_id, message_count, "
     "user_messages, assistant_messages, tokens_in, tokens_out, duration, "
     "first_response_seconds, satisfaction, started_at, ended_at, closed_at, "
     "resolution_seconds, model"),
)


def load(url: str, data: Dataset, target_messages: int, seed: int) -> float:
    """COPY conversations until the database holds `target_messages`; seconds taken (the
    vacuum and analyze included)."""
    began = time.perf_counter()
    # Enough conversations for the target at the mean length (~20.5), then exactly up to it.
    with psycopg.connect(url, autocommit=False) as connection:
        while data.messages < target_messages:
            mean = 20.5
            count = max(1, min(CONVERSATIONS_PER_COPY,
                               math.ceil((target_messages - data.messages) / mean)))
            for batch in conversation_rows(data, data.conversations, count,
                                           seed * 1_000_003 + data.conversations):
                with connection.cursor() as cursor:
                    for (table, columns), lines in zip(COPIES, batch):
                        with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as out:
                            for start in range(0, len(lines), 5_000):
                                out.write("".join(lines[start:start + 5_000]))
                    # As after the indexer: these conversations' vectors are written.
                    cursor.execute("TRUNCATE search_pending")
                connection.commit()
            data.conversations += count
            print(f"  scale: {data.messages:,} messages, {data.conversations:,} conversations, "
                  f"{time.perf_counter() - began:.0f} s", file=sys.stderr, flush=True)
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("VACUUM ANALYZE")
    return time.perf_counter() - began


def pool_vectors(url: str, texts: list[str]) -> list[str]:
    """`message_search_vector` of each text, as the indexer computes it, in COPY's text form."""
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "SELECT message_search_vector(t)::text FROM unnest(%s::text[]) WITH ORDINALITY "
            "AS u(t, n) ORDER BY n", (texts,)).fetchall()
    return [r[0] for r in rows]


@dataclass
class Figures:
    stats_p99: float = 0.0
    stats_uncached_p50: float = 0.0
    list_first_p99: float = 0.0
    list_cursor_p99: float = 0.0
    search_rare_p50: float = 0.0
    search_common_p50: float = 0.0
    rare_hits: int = 0
    context: dict[str, float] = field(default_factory=dict)
    joined_first: dict[str, float] = field(default_factory=dict)
    list_alone: dict[str, float] = field(default_factory=dict)


def http_get(port: int, path: str, key: str) -> Callable[[], Callable[[], Any]]:
    def make() -> Callable[[], Any]:
        def call() -> None:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            connection.request("GET", path, headers={"Authorization": f"Bearer {key}"})
            response = connection.getresponse()
            body = response.read()
            assert response.status == 200, body[:200]
            connection.close()
        return call
    return make


@contextmanager
def captured_sql(engine: Any, marker: str) -> Iterator[list[tuple[str, Any]]]:
    """The statements (and their parameters) holding `marker` that run meanwhile."""
    statements: list[tuple[str, Any]] = []

    def keep(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if marker in statement:
            statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", keep)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", keep)


def explain(engine: Any, statements: list[tuple[str, Any]], label: str) -> None:
    """EXPLAIN (ANALYZE, BUFFERS) of the captured statements into PLANS: why a figure is what
    it is."""
    with engine.connect() as connection, open(PLANS, "a") as out:
        for statement, parameters in statements:
            plan = connection.exec_driver_sql(
                f"EXPLAIN (ANALYZE, BUFFERS) {statement}", parameters).scalars().all()
            out.write(f"== {label}\n" + "\n".join(plan) + "\n\n")
    print(f"  scale: plan of {label} in {PLANS}", file=sys.stderr, flush=True)


def median_ms(work: Callable[[], Any], repeat: int) -> float:
    work()  # warm
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        work()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def measure(container: Any, settings: Any, tenant: str, context_id: str,
            data: Dataset) -> Figures:
    from conversation.domain.messages import utc_timestamp
    from conversation.queries.listing import (
        ConversationListing,
        ListFilters,
        decode_cursor,
        encode_cursor,
    )
    from conversation.queries.search import ConversationSearch, SearchFilters

    figures = Figures()
    engine = container.engine
    with engine.connect() as connection:
        # A cursor from the middle of the tenant's 90 days: a page deep in the list.
        middle = connection.execute(text(
            "SELECT created_at, id FROM conversations WHERE tenant_id = :t "
            "ORDER BY created_at DESC, id DESC OFFSET (SELECT count(*) / 2 FROM conversations "
            "WHERE tenant_id = :t) LIMIT 1"), {"t": tenant}).one()
    cursor = encode_cursor(utc_timestamp(middle.created_at), middle.id)
    key = container.api_keys.create(tenant)
    port = free_port()
    env = {**os.environ, "REDIS_URL": settings.redis_url, "DATABASE_URL": settings.database_url,
           "REDIS_KEY_PREFIX": settings.redis_key_prefix, "API_RATE_LIMIT": "1000000/minute",
           "CELERY_BROKER_URL": settings.broker_url,
           "CELERY_RESULT_BACKEND": settings.result_backend}
    api = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "2",
         "api.wsgi:app"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stats_path = f"/api/conversations/stats/{tenant}?from={RANGE[0]}&to={RANGE[1]}&group_by=day"
    list_path = f"/api/conversations/list/{tenant}?limit={LIST_LIMIT}"
    try:
        wait_for_http(port)
        stats_call = http_get(port, stats_path, key)
        for _ in range(20):
            stats_call()()  # warm both workers
        uncached = []
        for _ in range(20):
            container.stats_cache.invalidate()
            began = time.perf_counter()
            stats_call()()
            uncached.append((time.perf_counter() - began) * 1000)
        figures.stats_uncached_p50 = statistics.median(uncached)
        figures.stats_p99 = percentile(
            concurrent_latencies(CLIENTS, REQUESTS_PER_CLIENT, stats_call), 0.99)
        for path, attribute in ((list_path, "list_first_p99"),
                                (f"{list_path}&cursor={cursor}", "list_cursor_p99")):
            call = http_get(port, path, key)
            call()()
            setattr(figures, attribute, percentile(
                concurrent_latencies(CLIENTS, REQUESTS_PER_CLIENT, call), 0.99))
    finally:
        api.terminate()
        api.wait(timeout=30)

    # The list's statements alone, in process (the HTTP rows add the API and 16 clients
    # queueing for its 2 workers on this 2-core machine).
    listing = ConversationListing(container.tiers, engine)
    for after, attribute in ((None, "first"), (decode_cursor(cursor), "cursor")):
        with captured_sql(engine, "FROM conversations") as statements:
            listing.list_conversations(tenant, ListFilters(), LIST_LIMIT, after)
        explain(engine, statements, f"list, {attribute} page, {data.messages:,} messages")
        figures.list_alone[attribute] = median_ms(
            lambda a=after: listing.list_conversations(tenant, ListFilters(), LIST_LIMIT, a),
            SEARCH_REPEAT)

    search = ConversationSearch(engine, container.tiers, container.settings.search_languages)
    for query, attribute in ((f'"{RARE}"', "search_rare_p50"), (COMMON, "search_common_p50")):
        with captured_sql(engine, "ts_rank_cd") as statements:
            found = search.search(tenant, query, SearchFilters(), 20)["items"]
        explain(engine, statements, f"search {query!r}, {data.messages:,} messages")
        if query != COMMON:
            figures.rare_hits = len(found)
        assert found, f"no hits for {query}"
        setattr(figures, attribute,
                median_ms(lambda q=query: search.search(tenant, q, SearchFilters(), 20),
                          SEARCH_REPEAT))

        # Every match joined before the newest are picked (the agent filter's statement,
        # and the exact answer the search falls back to), for comparison.
        def joined_first(q: str = query) -> Any:
            return search._persisted(tenant, q, SearchFilters(), 21, 0, ranked_first=False)

        assert joined_first()[:20] == found, f"the two statements differ for {query}"
        with captured_sql(engine, "ts_rank_cd") as statements:
            joined_first()
        explain(engine, statements, f"search {query!r} joined first, {data.messages:,} messages")
        figures.joined_first[attribute] = median_ms(joined_first, 5)

    for window in ("8k", "32k"):
        def context(window: str = window) -> dict:
            return container.context_builder.get_context(
                tenant_id=tenant, conversation_id=context_id, window=window)
        with captured_sql(engine, "FROM messages") as statements:
            assert context()["messages"], "the migrated conversation's context is empty"
        explain(engine, statements, f"context {window}, {data.messages:,} messages")
        figures.context[window] = median_ms(context, CONTEXT_REPEAT)
    return figures


def bench_scale(servers: Any, n: int, report: Callable[..., None], row: Callable[..., Any],
                build_history: Callable[..., str]) -> None:
    from conversation.adapters.schema_migrations import upgrade
    from conversation.bootstrap import Container

    large = int(os.environ.get("BENCH_SCALE_MESSAGES", "10000000"))
    small = large // 10
    service = servers.settings()
    base = service.require("database_url").rpartition("/")[0]
    url = f"{base}/{DATABASE}"
    admin = f"{base}/postgres".replace("postgresql+psycopg://", "postgresql://", 1)
    plain = url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{DATABASE}"')
    container = None
    try:
        upgrade(url)
        settings = servers.settings(database_url=url, database_replica_url=url)
        container = Container(settings)
        data = make_dataset()
        rng = random.Random(18)
        data.pool = make_pool(rng)
        data.vectors = pool_vectors(plain, data.pool)
        data.planted = [f"{t} and the {RARE} ate my invoice" for t in data.pool[:100]]
        data.planted_vectors = pool_vectors(plain, data.planted)
        data.common_share = sum(COMMON in t.split() for t in data.pool) / len(data.pool)
        tenant = data.tenants[0]

        measured: dict[int, Figures] = {}
        for size, seed in ((small, 1), (large, 2)):
            seconds = load(plain, data, size, seed)
            if size == small:
                # The migrated conversation, saved through the service and moved to
                # PostgreSQL by its migrator, indexed for search as the beat would.
                context_id = build_history(container, tenant, "scale-ctx-10000", 10_000)
                container.migrator.migrate(context_id, None, force=True)
                container.search_indexer.index_pending(max_passes=10)
            began = time.perf_counter()
            container.statistics.aggregate()
            rollup = time.perf_counter() - began
            with psycopg.connect(plain, autocommit=True) as connection:
                connection.execute("VACUUM ANALYZE")
                sizes = connection.execute(
                    "SELECT pg_size_pretty(pg_database_size(current_database())), "
                    "(SELECT count(*) FROM messages WHERE tenant_id = %s)", (tenant,)).fetchone()
            print(f"scale: {data.messages:,} messages ({sizes[1]:,} of tenant {tenant}) in "
                  f"{data.conversations:,} conversations, loaded in {seconds:.0f} s (COPY, "
                  f"VACUUM ANALYZE), rollup {rollup:.0f} s; database {sizes[0]}; "
                  f"'{COMMON}' in {data.common_share:.1%} of texts; rare phrase in "
                  f"{data.rare_in_largest} of the tenant's messages", flush=True)
            measured[size] = measure(container, settings, tenant, context_id, data)
            print(f"scale: {size:,}: {measured[size]}", flush=True)
        one, ten = measured[small], measured[large]
        label = f"{large / 1e6:g} M vs {small / 1e6:g} M"

        def emit(area: str, big: float, little: float, kind: str, goal: float | None,
                 note: str = "") -> None:
            ratio = big / little if little else None
            targets = ([f"{kind} <= {goal:g} ms"] if goal else []) + ["<= 2x the 1 M value"]
            met = (ratio is not None and ratio <= 2) and (goal is None or big <= goal)
            report(row(f"scale {label}: {area}", f"{kind} {big:.1f} ms{note}",
                       f"{small / 1e6:g} M: {kind} {little:.1f} ms", ratio,
                       "; ".join(targets), met))

        emit(f"stats, {CLIENTS} clients, 90 days by day", ten.stats_p99, one.stats_p99,
             "p99", 50, f" (uncached alone p50 {ten.stats_uncached_p50:.1f} ms vs "
             f"{one.stats_uncached_p50:.1f} ms)")
        for attribute, page, what in (("list_first_p99", "first", f"first page of {LIST_LIMIT}"),
                                      ("list_cursor_p99", "cursor", "a cursor page mid-range")):
            emit(f"list, {what}, {CLIENTS} clients", getattr(ten, attribute),
                 getattr(one, attribute), "p99", None,
                 f" (its query alone, in process: p50 {ten.list_alone[page]:.1f} ms vs "
                 f"{one.list_alone[page]:.1f} ms)")
        for attribute, what in (("search_rare_p50", "rare phrase"),
                                ("search_common_p50", f"common word ('{COMMON}')")):
            emit(f"search, {what}", getattr(ten, attribute), getattr(one, attribute), "p50",
                 100, f" (joined first, the exact fallback: {ten.joined_first[attribute]:.0f}"
                      f" ms vs {one.joined_first[attribute]:.0f} ms)")
        for window in ("8k", "32k"):
            emit(f"context {window} from PostgreSQL, 10,000 messages",
                 ten.context[window], one.context[window], "p50", None)
    finally:
        if container is not None:
            container.close()
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
