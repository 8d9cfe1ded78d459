"""Hostile input through the real API on real PostgreSQL and Redis (issue 15): every bad
parameter is a JSON 4xx, never a 500, overflow and NUL included."""
from __future__ import annotations

import base64

import pytest

from api import create_app
from conversation.bootstrap import Container

pytestmark = pytest.mark.integration


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


@pytest.fixture
def client(container: Container):  # noqa: ANN201
    return create_app(container=container).test_client()


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


HOSTILE = [
    # A valid ISO-8601 instant that overflows once the offset is applied.
    "/api/conversations/list/{t}?cursor=MDAwMS0wMS0wMVQwMDowMDowMCswMTowMHx4",
    "/api/conversations/stats/{t}?from=0001-01-01T00:00:00%2B01:00",
    "/api/conversations/stats/{t}?to=9999-12-31T23:59:59-01:00",
    "/api/agents/bot/stats?tenant_id={t}&from=0001-01-01T00:00:00%2B01:00",
    "/api/conversations/list/{t}?from=0001-01-01T00:00:00%2B01:00",
    "/api/conversations/search/{t}?q=hello&from=0001-01-01T00:00:00%2B01:00",
    "/api/conversations/search/{t}?q=hello&to=9999-12-31T23:59:59-01:00",
    "/api/admin/export/{t}?from=0001-01-01T00:00:00%2B01:00",
    # Cursors that are not ones the API gave out.
    "/api/conversations/list/{t}?cursor=" + b64("2026-11-01T00:00:00Z|a\x00b"),
    "/api/conversations/list/{t}?cursor=" + b64("2026-11-01T00:00:00Z|x|y"),
    "/api/conversations/list/{t}?cursor=" + b64("2026-11-01T00:00:00Z"),
    "/api/conversations/list/{t}?cursor=" + b64("\udcff|x".encode("utf-8", "surrogatepass")
                                                .decode("latin-1")),
    "/api/conversations/search/{t}?q=hello&cursor=" + b64("o-1"),
    "/api/conversations/search/{t}?q=hello&cursor=" + b64("o99999999"),
    "/api/conversations/search/{t}?q=hello&cursor=" + b64("o" + "9" * 60),
    "/api/conversations/search/{t}?q=hello&cursor=%%%",
    # Bounds and choices.
    "/api/conversations/list/{t}?limit=99999999999999999999999",
    "/api/conversations/list/{t}?limit=-1",
    "/api/conversations/list/{t}?limit=1.5",
    "/api/conversations/search/{t}?q=hello&limit=101",
    "/api/conversations/stats/{t}?group_by=DAY",
    "/api/conversations/stats/{t}?group_by=day%00",
    "/api/conversations/stats/{t}?from=2026-11-01",
    "/api/conversations/stats/{t}?from=2026-11-01T00:00:00",
    "/api/conversations/stats/{t}?from=10000-01-01T00:00:00Z",
    # NUL reaches PostgreSQL's text only through q (and the identifiers below).
    "/api/conversations/search/{t}?q=hel%00lo",
    "/api/conversations/search/{t}?q=%00",
    # Identifiers match as a whole: `$` also matches before a trailing newline.
    "/api/conversations/list/{t}?agent_id=bot%0A",
    "/api/conversations/list/{t}?session_id=s%0A",
    "/api/conversations/search/{t}?q=hello&agent_id=bot%0A",
    "/api/agents/bot/stats?tenant_id={t}%0A",
    "/api/conversations/list/{t}%0A",
    "/api/conversations/stats/{t}%0A",
    "/api/conversations/x%0A/full",
    "/api/agents/bot%0A/stats?tenant_id={t}",
]


@pytest.mark.parametrize("path", HOSTILE)
def test_hostile_parameters_get_a_json_4xx_never_a_500(client, container, path) -> None:
    # An admin key: the requests reach the queries, not only the tenant check.
    key = container.api_keys.create(None, admin=True)
    response = client.get(path.format(t="hostile"), headers=auth(key))
    assert 400 <= response.status_code < 500, (response.status_code, response.get_data())
    assert set(response.json["error"]) == {"code", "message", "details"}


def test_the_end_of_time_is_a_valid_range(client, container) -> None:
    """`to` at the last instant Python holds is a range to the end, not an overflow."""
    key = container.api_keys.create("hostile")
    for path in ("/api/conversations/stats/hostile?to=9999-12-31T23:59:59Z",
                 "/api/conversations/stats/hostile?from=0001-01-01T00:00:00Z",
                 "/api/conversations/list/hostile?to=9999-12-31T23:59:59.999999Z",
                 "/api/conversations/search/hostile?q=x&to=9999-12-31T23:59:59Z"):
        response = client.get(path, headers=auth(key))
        assert response.status_code == 200, (path, response.get_data())
