"""The API's limits on real PostgreSQL and Redis: a statement timeout on its reads (503 JSON),
a moving-window rate limit per API key (never more than N in any window of that length, 429
with Retry-After past it), which fails open while Redis is down."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import limits.storage.redis
import psycopg
import pytest
from sqlalchemy import text

import api.ratelimit
from api import create_app
from config.settings import Settings
from conversation.bootstrap import Container
from conversation.embedded import EmbeddedRedis

pytestmark = pytest.mark.integration


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def limited(settings: Settings, request: pytest.FixtureRequest) -> Iterator[Container]:
    """A container with the test's own settings (`@pytest.mark.parametrize` them by name)."""
    container = Container(replace(settings, **request.param))
    yield container
    container.close()


# --- statement timeout ------------------------------------------------------------------------

@contextmanager
def locked(database_url: str, table: str) -> Iterator[None]:
    """A table locked by another session, as behind a long write or migration. Every wait has
    a timeout: PostgreSQL ends the session (and its lock) after 10 s, so without a statement
    timeout a request would answer late, not hang the suite."""
    locker = psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://"))
    try:
        locker.execute("SET idle_in_transaction_session_timeout = '10s'")
        locker.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        yield
    finally:
        locker.close()  # the lock goes with the session


@pytest.mark.parametrize("limited", [{"api_statement_timeout_ms": 300}], indirect=True)
def test_a_read_past_the_statement_timeout_answers_503_json(limited: Container,
                                                            database_url: str) -> None:
    """A list that waits on a lock is cancelled by PostgreSQL after API_STATEMENT_TIMEOUT_MS:
    503 JSON, and the next request is served; the key lookup of every request too."""
    client = create_app(container=limited).test_client()
    key = limited.api_keys.create("timed")
    url = "/api/conversations/list/timed"
    assert client.get(url, headers=auth(key)).status_code == 200
    with locked(database_url, "conversations"):
        response = client.get(url, headers=auth(key))
    assert response.status_code == 503
    assert response.json["error"]["code"] == "timeout"
    assert set(response.json["error"]) == {"code", "message", "details"}
    assert client.get(url, headers=auth(key)).status_code == 200  # the pool is healthy
    with locked(database_url, "api_keys"):
        response = client.get(url, headers=auth(key))
    assert response.status_code == 503 and response.json["error"]["code"] == "timeout"


@pytest.mark.parametrize("limited", [{"api_statement_timeout_ms": 300}], indirect=True)
def test_the_timeout_is_only_on_the_apis_reads(limited: Container) -> None:
    app = create_app(container=limited)
    queries = app.extensions["conversation_queries"]
    shown = {}
    for name, engine in (("api reads", queries.listing.read_engine),
                         ("api primary reads", queries.transcripts.tiers.archive.engine),
                         ("api keys", app.extensions["api_key_reads"].engine),
                         ("workers", limited.engine)):
        with engine.connect() as connection:
            shown[name] = connection.execute(text("SHOW statement_timeout")).scalar()
    assert shown == {"api reads": "300ms", "api primary reads": "300ms", "api keys": "300ms",
                     "workers": "0"}


# --- rate limit -------------------------------------------------------------------------------

class Clock:
    """The rate limiter's clock, moved by the test: a minute's edge without waiting for one."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


@pytest.mark.parametrize("limited", [{"api_rate_limit": "100/2 seconds"}], indirect=True)
def test_never_more_than_the_limit_in_any_window_across_an_edge(
        limited: Container, monkeypatch: pytest.MonkeyPatch) -> None:
    """110 requests 5 ms apart from half a second before a window's edge (where a fixed window
    restarts its count), on the test's clock: the first 100 pass, the rest get 429 with
    Retry-After; another key has its own window; once the window has moved on past the first
    request, requests pass again."""
    edge = 1_800_000_000.0
    clock = Clock(edge - 0.5)
    monkeypatch.setattr(limits.storage.redis, "time", clock)
    monkeypatch.setattr(api.ratelimit, "time", clock)
    client = create_app(container=limited).test_client()
    key = limited.api_keys.create("limited")
    url = "/api/conversations/list/limited"
    responses = []
    for _ in range(110):
        responses.append(client.get(url, headers=auth(key)))
        last = clock.now
        clock.now += 0.005
    assert last > edge  # the requests crossed the edge
    assert [r.status_code for r in responses] == [200] * 100 + [429] * 10
    for response in responses[100:]:
        assert response.json["error"]["code"] == "rate_limited"
        assert 1 <= int(response.headers["Retry-After"]) <= 2
    # Another key has its own window.
    other = limited.api_keys.create("limited")
    assert client.get(url, headers=auth(other)).status_code == 200
    assert client.get(url, headers=auth(key)).status_code == 429
    clock.now = edge - 0.5 + 2.001  # the first request has left the window
    assert client.get(url, headers=auth(key)).status_code == 200


@pytest.mark.parametrize("limited", [{"api_rate_limit": "1000/minute"}], indirect=True)
def test_1100_requests_across_a_minutes_edge_get_429_past_1000(
        limited: Container, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 15's case, on the real Redis: 1,100 requests 1 ms apart from 0.5 s before a
    minute's edge, with 1000/minute. A fixed window let all 1,100 through (500 before the edge,
    600 after); the moving window lets exactly the first 1,000 through."""
    edge = 1_800_000_000.0 - 1_800_000_000 % 60 + 60
    clock = Clock(edge - 0.5)
    monkeypatch.setattr(limits.storage.redis, "time", clock)
    monkeypatch.setattr(api.ratelimit, "time", clock)
    client = create_app(container=limited).test_client()
    key = limited.api_keys.create("minute")
    codes = []
    for _ in range(1100):
        codes.append(client.get("/api/conversations/list/minute",
                                headers=auth(key)).status_code)
        last = clock.now
        clock.now += 0.001
    assert last > edge  # the requests crossed the minute's edge
    assert codes == [200] * 1000 + [429] * 100
    refused = client.get("/api/conversations/list/minute", headers=auth(key))
    assert 59 <= int(refused.headers["Retry-After"]) <= 60  # the first request, a minute on
    clock.now = edge - 0.5 + 60.001  # the first request has left the window
    assert client.get("/api/conversations/list/minute", headers=auth(key)).status_code == 200


@pytest.fixture
def own_redis(test_var_dir: Path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(test_var_dir / "ratelimit-redis", persist=False).start()
    yield server
    server.stop()


def test_the_rate_limit_fails_open_while_redis_is_down(settings: Settings,
                                                       own_redis: EmbeddedRedis) -> None:
    """Redis down: the API serves from PostgreSQL, unthrottled (refusing everyone would turn a
    Redis outage into an API outage); Redis back: the limit holds again."""
    container = Container(replace(settings, redis_url=f"{own_redis.url}/0",
                                  api_rate_limit="3/minute"))
    try:
        client = create_app(container=container).test_client()
        key = container.api_keys.create("open")
        url = "/api/conversations/list/open"
        assert [client.get(url, headers=auth(key)).status_code for _ in range(4)] == [
            200, 200, 200, 429]
        # Counted by the key's id, never the key itself.
        key_id = container.api_keys.list("open")[-1]["id"]
        counters = [k.decode() for k in container.redis.keys(
            f"{container.settings.redis_key_prefix}ratelimit*")]
        assert len(counters) == 1 and f"/key{key_id}/" in counters[0]
        assert key not in counters[0] and key[3:13] not in counters[0]
        own_redis.stop()
        assert [client.get(url, headers=auth(key)).status_code for _ in range(5)] == [200] * 5
        own_redis.start()  # empty: persist=False
        assert [client.get(url, headers=auth(key)).status_code for _ in range(4)] == [
            200, 200, 200, 429]
    finally:
        container.close()
