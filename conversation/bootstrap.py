"""The one place that wires adapters into services. Nothing connects until first used."""
from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cached_property
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry
from celery import Celery
from sqlalchemy import Engine

from config.celery import TASK_QUEUES, celery_config
from config.settings import Settings
from conversation.adapters.api_keys import ApiKeyStore
from conversation.adapters.dead_letters import DeadLetterOffice
from conversation.adapters.deliveries import RedisDeliveryCounter
from conversation.adapters.dispatch import CeleryScheduler, CelerySummaryRequests
from conversation.adapters.metrics import observe_migration
from conversation.adapters.outage import CircuitBreaker, GuardedActiveStore
from conversation.adapters.read_cache import StatsCache
from conversation.adapters.redis import RedisActiveStore, RedisLocks
from conversation.adapters.search_sql import SearchIndexer
from conversation.adapters.postgres import SqlRepository, make_engine
from conversation.adapters.sql_stats import SqlStatistics
from conversation.adapters.tokenizer import TiktokenCounter
from conversation.queries import ReadQueries
from conversation.queries.listing import ConversationListing
from conversation.queries.search import ConversationSearch
from conversation.queries.statement_timeout import with_statement_timeout
from conversation.queries.stats import TenantStatistics
from conversation.queries.transcripts import Transcripts
from conversation.services.context import ContextBuilder
from conversation.services.erasure import Eraser
from conversation.services.migration import ConversationMigrator
from conversation.services.migration_lead import DueMigrations
from conversation.services.save import MessageSaver
from conversation.services.sessions import SessionLifecycle
from conversation.services.statistics import StatisticsAggregator
from conversation.services.summaries import SummaryBuilder
from conversation.services.tiers import Tiers

_tokenizers: dict[str, TiktokenCounter] = {}


def tokenizer_for(default_encoding: str) -> TiktokenCounter:
    """One tokenizer per process: loading a BPE table costs a fraction of a second."""
    if default_encoding not in _tokenizers:
        _tokenizers[default_encoding] = TiktokenCounter(default_encoding)
    return _tokenizers[default_encoding]


def redis_client(url: str, *, cluster: bool = False) -> Any:
    options: dict[str, Any] = {
        "socket_timeout": 5,
        "socket_connect_timeout": 5,
        "health_check_interval": 30,
        # After a Redis restart the pool's sockets are dead: the first command on one fails.
        # Retry it twice on a fresh connection (50-200 ms apart) before calling Redis down, so
        # a restart is not mistaken for an outage (which would fail the task's retries fast
        # while the circuit breaker is open).
        "retry": Retry(ExponentialBackoff(cap=0.2, base=0.05), 2),
        "retry_on_error": [redis.ConnectionError, redis.TimeoutError],
    }
    if cluster:
        from redis.cluster import RedisCluster

        return RedisCluster.from_url(url, **options)
    return redis.Redis.from_url(url, **options)


@dataclass(frozen=True)
class Overrides:
    """Ready-made parts for a Container (fakes, or clients of the servers a test started); each
    left None is built from settings on first use."""

    redis: Any = None  # a redis-py client (or fakeredis)
    engine: Engine | None = None
    producer: Celery | None = None
    tokenizer: TiktokenCounter | None = None
    active_store: RedisActiveStore | None = None
    repository: SqlRepository | None = None
    dead_letters: DeadLetterOffice | None = None
    locks: RedisLocks | None = None
    due_migrations: DueMigrations | None = None
    eraser: Eraser | None = None
    context_builder: ContextBuilder | None = None


class Container:
    """Adapters and services for one process, built lazily from settings.

    Tests pass ready-made parts as `Overrides`; anything not passed is built from settings on
    first use.
    """

    def __init__(self, settings: Settings | None = None,
                 overrides: Overrides | None = None) -> None:
        self.settings = settings or Settings.from_env()
        for part in fields(Overrides):
            value = getattr(overrides, part.name, None)
            if value is not None:
                # Where the cached_property of that name keeps its value: never built then.
                self.__dict__[part.name] = value

    @cached_property
    def redis(self) -> Any:
        return redis_client(self.settings.require("redis_url"), cluster=self.settings.redis_cluster)

    @cached_property
    def engine(self) -> Engine:
        return make_engine(self.settings.require("database_url"))

    @cached_property
    def replica_engine(self) -> Engine:
        replica = self.settings.database_replica_url
        if not replica or replica == self.settings.database_url:
            return self.engine
        return make_engine(replica)

    @cached_property
    def producer(self) -> Celery:
        """A bare Celery app that publishes by task name, as any upstream service does."""
        app = Celery("conversation-producer", set_as_current=False)
        app.config_from_object(celery_config(self.settings))
        return app

    @cached_property
    def tokenizer(self) -> TiktokenCounter:
        return tokenizer_for(self.settings.default_encoding)

    @cached_property
    def breaker(self) -> CircuitBreaker:
        return CircuitBreaker()

    @cached_property
    def active_store(self) -> RedisActiveStore:
        """Behind a circuit breaker: with Redis down, the services use PostgreSQL."""
        store = RedisActiveStore(self.redis, prefix=self.settings.redis_key_prefix)
        return GuardedActiveStore(store, self.breaker)  # type: ignore[return-value]

    @cached_property
    def repository(self) -> SqlRepository:
        return SqlRepository(self.engine)

    @cached_property
    def read_repository(self) -> SqlRepository:
        return SqlRepository(self.replica_engine)

    @cached_property
    def tiers(self) -> Tiers:
        """Which tier holds a conversation, with PostgreSQL standing in while Redis is down."""
        return Tiers(self.active_store, self.repository)

    @cached_property
    def queries(self) -> ReadQueries:
        """The API's reads, each under the statement timeout (the admin's erasure and export
        are not: they take as long as the tenant's data takes). Lists, statistics and search
        read the replica; one conversation, the primary (a just-migrated one may not have
        reached the replica yet)."""
        timeout = self.settings.api_statement_timeout_ms
        reads = with_statement_timeout(self.replica_engine, timeout)
        tiers = Tiers(self.active_store,
                      SqlRepository(with_statement_timeout(self.engine, timeout)))
        return ReadQueries(
            transcripts=Transcripts(tiers),
            listing=ConversationListing(tiers, reads),
            stats=TenantStatistics(reads, self.stats_cache),
            search=ConversationSearch(reads, tiers, self.settings.search_languages),
        )

    @cached_property
    def api_keys(self) -> ApiKeyStore:
        return ApiKeyStore(self.engine)

    @cached_property
    def dead_letters(self) -> DeadLetterOffice:
        return DeadLetterOffice(
            self.engine, self.settings.require("broker_url"), self.settings.alert_webhook_url
        )

    @cached_property
    def saver(self) -> MessageSaver:
        return MessageSaver(self.active_store, self.repository, self.tokenizer)

    @cached_property
    def context_builder(self) -> ContextBuilder:
        return ContextBuilder(
            self.active_store,
            self.repository,
            self.tokenizer,
            windows=self.settings.windows,
            model_windows=self.settings.model_windows,
            summary_requests=CelerySummaryRequests(
                self.producer, self.redis, self.settings.redis_key_prefix
            ),
            wait_slots=self.active_store,
            waits_per_tenant=self.settings.waits_per_tenant,
        )

    @cached_property
    def summary_builder(self) -> SummaryBuilder:
        from conversation.adapters.summariser import ChatModelSummariser, load_chat_model

        encoding = self.tokenizer.default_encoding
        summariser = ChatModelSummariser(
            load_chat_model(self.settings.summary_model, self.settings.summary_language),
            lambda text: self.tokenizer.count(text, encoding),
        )
        return SummaryBuilder(
            self.active_store,
            self.repository,
            self.tokenizer,
            summariser,
            self.locks,
        )

    @cached_property
    def locks(self) -> RedisLocks:
        return RedisLocks(self.redis, self.settings.redis_key_prefix)

    @cached_property
    def deliveries(self) -> RedisDeliveryCounter:
        # Every task start and end pays a round trip: behind the active store's breaker, so
        # that with Redis down they pay none (the tasks run uncounted, as they always could).
        counter = RedisDeliveryCounter(self.redis, self.settings.redis_key_prefix)
        return GuardedActiveStore(counter, self.breaker)  # type: ignore[return-value]

    @cached_property
    def sessions(self) -> SessionLifecycle:
        return SessionLifecycle(
            self.active_store,
            CeleryScheduler(self.producer),
            grace_seconds=self.settings.session_grace_seconds,
            repository=self.repository,
            migrations=self.due_migrations,
        )

    @cached_property
    def migrator(self) -> ConversationMigrator:
        return ConversationMigrator(
            self.active_store, self.repository, observe_migration,
            on_quarantined=lambda outcome: self.dead_letters.quarantine(
                outcome.conversation_id, outcome.reason or "refused"),
        )

    @cached_property
    def due_migrations(self) -> DueMigrations:
        return DueMigrations(
            self.active_store,
            self.migrator,
            self.settings.session_grace_seconds,
            self.locks,
            idle_seconds=self.settings.idle_timeout_seconds,
        )

    @cached_property
    def eraser(self) -> Eraser:
        # The dead-letter queue's copies go too, where there is a broker to reach.
        queued = self.dead_letters if self.settings.broker_url else None
        return Eraser(self.active_store, self.repository, queued,
                      erase_later=self._erase_queued_later if queued else None)

    def _erase_queued_later(self, targets: list[tuple[str, str | None, str | None]]) -> None:
        """The dead-letter queue's pass as a task (tasks/erasure_tasks.py), off the request."""
        self.producer.send_task("conversation.erase_queued_letters",
                                kwargs={"targets": [list(t) for t in targets]},
                                queue=TASK_QUEUES["conversation.erase_queued_letters"])

    @cached_property
    def search_indexer(self) -> SearchIndexer:
        return SearchIndexer(self.engine)

    @cached_property
    def stats_cache(self) -> StatsCache:
        # Behind the same breaker as the active store: while Redis is down, no cache.
        cache = StatsCache(self.redis, self.settings.redis_key_prefix)
        return GuardedActiveStore(cache, self.breaker)  # type: ignore[return-value]

    @cached_property
    def statistics(self) -> StatisticsAggregator:
        # Writes go to the primary; only the API's reads use the replica.
        return StatisticsAggregator(
            self.active_store, SqlStatistics(self.engine), self.stats_cache
        )

    def close(self) -> None:
        for name in ("engine", "replica_engine"):
            if name in self.__dict__:
                self.__dict__[name].dispose()
        if "redis" in self.__dict__:
            self.__dict__["redis"].close()


_container: Container | None = None


def container() -> Container:
    """The process's container (built on first use, after any fork)."""
    global _container
    if _container is None:
        _container = Container()
    return _container


def reset_container(new: Container | None = None) -> None:
    global _container
    if _container is not None and _container is not new:
        _container.close()
    _container = new
