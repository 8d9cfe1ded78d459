"""The API's limits on real PostgreSQL and Redis: a statement timeout on its reads (503 JSON)."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import psycopg
import pytest
from sqlalchemy import text

from api import create_app
from config.settings import Settings
from conversation.bootstrap import Container

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

@pytest.mark.parametrize("limited", [{"api_statement_timeout_ms": 300}], indirect=True)
def test_a_read_past_the_statement_timeout_answers_503_json(limited: Container,
                                                            database_url: str) -> None:
    """A list that waits on a lock (as behind a long write or a slow plan) is cancelled by
    PostgreSQL after API_STATEMENT_TIMEOUT_MS: 503 JSON, and the next request is served."""
    client = create_app(container=limited).test_client()
    key = limited.api_keys.create("timed")
    url = "/api/conversations/list/timed"
    assert client.get(url, headers=auth(key)).status_code == 200
    libpq = database_url.replace("postgresql+psycopg://", "postgresql://")
    locker = psycopg.connect(libpq)
    try:
        # Every wait has a timeout: PostgreSQL ends this session (and its lock) after 10 s, so
        # without a statement timeout the request would answer late, not hang the suite.
        locker.execute("SET idle_in_transaction_session_timeout = '10s'")
        locker.execute("LOCK TABLE conversations IN ACCESS EXCLUSIVE MODE")
        response = client.get(url, headers=auth(key))
    finally:
        locker.close()  # the lock goes with the session
    assert response.status_code == 503
    assert response.json["error"]["code"] == "timeout"
    assert set(response.json["error"]) == {"code", "message", "details"}
    assert client.get(url, headers=auth(key)).status_code == 200  # the pool is healthy


@pytest.mark.parametrize("limited", [{"api_statement_timeout_ms": 300}], indirect=True)
def test_the_timeout_is_only_on_the_apis_reads(limited: Container) -> None:
    app = create_app(container=limited)
    views = app.extensions["conversation_views"]
    shown = {}
    for name, engine in (("api reads", views.read_engine), ("api primary reads",
                                                            views.repository.engine),
                         ("workers", limited.engine)):
        with engine.connect() as connection:
            shown[name] = connection.execute(text("SHOW statement_timeout")).scalar()
    assert shown == {"api reads": "300ms", "api primary reads": "300ms", "workers": "0"}
