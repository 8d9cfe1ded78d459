"""The CRM API on real PostgreSQL and Redis: auth, tenancy, lists, transcripts, errors."""
from __future__ import annotations

import pytest

from api import create_app
from conversation.bootstrap import Container
from conversation.domain.messages import NewMessage, Role
from conversation.services.migration import ConversationMigrator

pytestmark = pytest.mark.integration


@pytest.fixture
def client(container: Container):  # noqa: ANN201
    return create_app(container=container).test_client()


def tenant_name(container: Container, base: str) -> str:
    # The database is shared by the run: tenants unique per test keep lists exact.
    return f"{base}-{container.settings.redis_key_prefix.strip(':')}"


def save(container: Container, tenant: str, session: str, content: str, **extra: object) -> str:
    command = NewMessage(
        tenant_id=tenant, session_id=session, agent_id=str(extra.pop("agent_id", "bot")),
        role=Role(str(extra.pop("role", "user"))), content=content,
        message_id=str(extra.pop("message_id", content)), **extra,  # type: ignore[arg-type]
    )
    return container.saver.save(command).conversation_id


def migrate(container: Container, tenant: str, session: str) -> None:
    closed = container.active_store.close_session(tenant, session, "2026-11-24T12:00:00.000000Z")
    assert closed is not None
    ConversationMigrator(container.active_store, container.repository).migrate(
        closed.conversation_id, closed.generation)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_requests_without_a_valid_key_get_401_json(client) -> None:
    for headers in ({}, auth("cs_nope"), {"Authorization": "Basic abc"}):
        response = client.get("/api/conversations/list/acme", headers=headers)
        assert response.status_code == 401
        assert response.json["error"]["code"] == "unauthorized"


def test_a_tenant_never_sees_another_tenants_data(client, container) -> None:
    acme, globex = tenant_name(container, "acme"), tenant_name(container, "globex")
    theirs = save(container, globex, f"{globex}-s", "secret plans")
    key = container.api_keys.create(acme)
    assert client.get(f"/api/conversations/list/{globex}", headers=auth(key)).status_code == 403
    assert client.get(f"/api/conversations/stats/{globex}", headers=auth(key)).status_code == 403
    response = client.get(f"/api/conversations/{theirs}/full", headers=auth(key))
    assert response.status_code == 404 and "secret" not in response.get_data(as_text=True)
    assert client.get(f"/api/agents/bot/stats?tenant_id={globex}",
                      headers=auth(key)).status_code == 403
    admin = container.api_keys.create(None, admin=True)
    assert client.get(f"/api/conversations/{theirs}/full", headers=auth(admin)).status_code == 200


def test_a_revoked_key_is_refused(client, container) -> None:
    tenant = tenant_name(container, "acme")
    key = container.api_keys.create(tenant)
    assert client.get(f"/api/conversations/list/{tenant}", headers=auth(key)).status_code == 200
    key_id = container.api_keys.list(tenant)[-1]["id"]
    assert container.api_keys.revoke(key_id)
    assert client.get(f"/api/conversations/list/{tenant}", headers=auth(key)).status_code == 401


def test_full_conversation_from_either_tier(client, container) -> None:
    tenant = tenant_name(container, "acme")
    key = container.api_keys.create(tenant)
    conversation_id = save(container, tenant, f"{tenant}-s1", "hello")
    active = client.get(f"/api/conversations/{conversation_id}/full", headers=auth(key)).json
    assert active["tier"] == "redis" and [m["content"] for m in active["messages"]] == ["hello"]
    migrate(container, tenant, f"{tenant}-s1")
    persisted = client.get(f"/api/conversations/{conversation_id}/full", headers=auth(key)).json
    assert persisted["tier"] == "postgres"
    assert persisted["messages"] == active["messages"]
    assert persisted["status"] == "closed"


def test_list_filters_and_pages_with_a_stable_cursor(client, container) -> None:
    tenant = tenant_name(container, "acme")
    key = container.api_keys.create(tenant)
    ids = []
    for i in range(5):
        ids.append(save(container, tenant, f"{tenant}-s{i}", f"message {i}",
                        agent_id="sales" if i % 2 else "support",
                        created_at=f"2026-11-2{i}T10:00:00Z"))
    for i in (0, 1, 2):
        migrate(container, tenant, f"{tenant}-s{i}")
    seen: list[str] = []
    cursor = None
    while True:
        query = "limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(f"/api/conversations/list/{tenant}?{query}", headers=auth(key)).json
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    closed = client.get(f"/api/conversations/list/{tenant}?status=closed",
                        headers=auth(key)).json["items"]
    assert [c["id"] for c in closed] == [ids[2], ids[1], ids[0]]
    sales = client.get(f"/api/conversations/list/{tenant}?agent_id=sales",
                       headers=auth(key)).json["items"]
    assert {c["id"] for c in sales} == {ids[1], ids[3]}
    ranged = client.get(
        f"/api/conversations/list/{tenant}?from=2026-11-21T00:00:00Z&to=2026-11-23T00:00:00Z",
        headers=auth(key)).json["items"]
    assert [c["id"] for c in ranged] == [ids[2], ids[1]]


def test_stats_per_day_and_per_agent(client, container) -> None:
    tenant = tenant_name(container, "acme")
    key = container.api_keys.create(tenant)
    for i, agent in enumerate(("support", "support", "sales")):
        session = f"{tenant}-st{i}"
        save(container, tenant, session, f"q{i}", agent_id=agent,
             created_at=f"2026-11-0{i + 1}T10:00:00Z")
        save(container, tenant, session, f"a{i}", agent_id=agent, role="assistant",
             created_at=f"2026-11-0{i + 1}T10:00:{10 * (i + 1):02d}Z",
             metadata={"satisfaction": 4 + i % 2})
        migrate(container, tenant, session)
    container.statistics.aggregate()
    stats = client.get(f"/api/conversations/stats/{tenant}?group_by=day",
                       headers=auth(key)).json
    assert stats["totals"]["conversations"] == 3
    assert stats["totals"]["messages"] == 6
    assert stats["totals"]["first_response_seconds"]["median"] == pytest.approx(20.0, rel=0.011)
    assert stats["totals"]["satisfaction_avg"] == pytest.approx(13 / 3, abs=0.001)
    # All three closed on the 24th: that day's period shows them closing.
    assert [(p["period"], p["conversations"], p["closed"]) for p in stats["series"]] == [
        ("2026-11-01", 1, 0), ("2026-11-02", 1, 0), ("2026-11-03", 1, 0), ("2026-11-24", 0, 3)]
    agent = client.get("/api/agents/support/stats", headers=auth(key)).json
    assert agent["totals"]["conversations"] == 2 and agent["agent_id"] == "support"


@pytest.mark.parametrize(
    "path",
    [
        "/api/conversations/list/{t}?limit=0",
        "/api/conversations/list/{t}?limit=abc",
        "/api/conversations/list/{t}?status=exploded",
        "/api/conversations/list/{t}?cursor=%%%",
        "/api/conversations/list/{t}?unknown=1",
        "/api/conversations/stats/{t}?group_by=year",
        "/api/conversations/stats/{t}?from=yesterday",
        "/api/conversations/stats/{t}?from=2026-11-02T00:00:00Z&to=2026-11-01T00:00:00Z",
    ],
)
def test_bad_input_gets_a_4xx_json_error_never_a_500(client, container, path) -> None:
    tenant = tenant_name(container, "acme")
    key = container.api_keys.create(tenant)
    response = client.get(path.format(t=tenant), headers=auth(key))
    assert 400 <= response.status_code < 500
    assert set(response.json["error"]) == {"code", "message", "details"}


def test_unknown_ids_are_404_json(client, container) -> None:
    key = container.api_keys.create(tenant_name(container, "acme"))
    for path in ("/api/conversations/nope/full", "/api/conversations/a:b/full", "/api/nothing"):
        response = client.get(path, headers=auth(key))
        assert response.status_code == 404
        assert response.json["error"]["code"] == "not_found"


def test_openapi_document_and_docs_page(client) -> None:
    spec = client.get("/api/openapi.json").json
    assert {"/api/conversations/stats/{tenant_id}", "/api/conversations/list/{tenant_id}",
            "/api/conversations/{conversation_id}/full",
            "/api/agents/{agent_id}/stats"} <= set(spec["paths"])
    docs = client.get("/api/docs")
    assert docs.status_code == 200 and b"swagger" in docs.data.lower()
    assert client.get("/static/swagger-ui/swagger-ui-bundle.js").status_code == 200


def test_health_and_ready(client) -> None:
    assert client.get("/health").json == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json["checks"] == {"postgres": "ok", "redis": "ok"}


def test_requests_past_the_rate_limit_get_429(container) -> None:
    from dataclasses import replace

    limited = Container(replace(container.settings, api_rate_limit="3/day"))
    client = create_app(container=limited).test_client()
    tenant = tenant_name(container, "acme")
    key = limited.api_keys.create(tenant)
    codes = [client.get(f"/api/conversations/list/{tenant}", headers=auth(key)).status_code
             for _ in range(5)]
    limited.close()
    assert codes == [200, 200, 200, 429, 429]
    other = container.api_keys.create(tenant)
    assert create_app(container=container).test_client().get(
        f"/api/conversations/list/{tenant}", headers=auth(other)).status_code == 200


def test_pages_stay_stable_while_new_data_arrives(client, container) -> None:
    """New conversations, new messages and a move to PostgreSQL between two pages: every
    conversation that existed is listed exactly once, in order."""
    tenant = tenant_name(container, "pages")
    key = container.api_keys.create(tenant)
    ids = [save(container, tenant, f"p{i}", f"m{i}", created_at=f"2026-11-0{i + 1}T10:00:00Z")
           for i in range(6)]  # newest last
    for i in (0, 1):
        migrate(container, tenant, f"p{i}")

    first = client.get(f"/api/conversations/list/{tenant}?limit=2", headers=auth(key)).json
    assert [item["id"] for item in first["items"]] == [ids[5], ids[4]]
    # Meanwhile: two new conversations, a new message on a listed one, and page 2's newest
    # conversation moves from Redis to PostgreSQL.
    newcomers = [save(container, tenant, f"n{i}", f"new {i}") for i in range(2)]
    save(container, tenant, "p5", "another message on a listed conversation")
    migrate(container, tenant, "p3")

    seen = [item["id"] for item in first["items"]]
    cursor = first["next_cursor"]
    while cursor:
        page = client.get(f"/api/conversations/list/{tenant}?limit=2&cursor={cursor}",
                          headers=auth(key)).json
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
    assert seen == list(reversed(ids))  # nothing twice, nothing skipped, newcomers not mixed in
    fresh = client.get(f"/api/conversations/list/{tenant}?limit=2", headers=auth(key)).json
    assert {item["id"] for item in fresh["items"]} == set(newcomers)
