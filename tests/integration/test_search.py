"""Search on real PostgreSQL and Redis: language-aware, ranked, highlighted, tenant-isolated,
paged, filtered, with the active conversations in Redis beside the persisted ones."""
from __future__ import annotations

import pytest
from sqlalchemy import text

from api import create_app
from conversation.adapters.schema_migrations import indexed_languages, set_search_languages
from conversation.bootstrap import Container
from conversation.domain.messages import NewMessage, Role
from conversation.services.migration import ConversationMigrator

pytestmark = pytest.mark.integration


def say(container: Container, tenant: str, session: str, content: str, *, agent: str = "bot",
        at: str = "2026-11-10T10:00:00Z", role: Role = Role.USER) -> str:
    return container.saver.save(NewMessage(
        tenant_id=tenant, session_id=session, agent_id=agent, role=role, content=content,
        message_id=f"{session}-{abs(hash(content))}", created_at=at)).conversation_id


def persist(container: Container, tenant: str, session: str) -> None:
    closed = container.active_store.close_session(tenant, session, "2026-11-24T12:00:00Z")
    assert closed is not None
    ConversationMigrator(container.active_store, container.repository).migrate(
        closed.conversation_id, closed.generation)


@pytest.fixture
def corpus(container: Container) -> dict[str, str]:
    tenant = f"srch-{container.settings.redis_key_prefix.strip(':')}"
    ids = {
        "en": say(container, tenant, "en", "I want to cancel my subscription today, please.",
                  agent="billing", at="2026-11-01T09:00:00Z"),
        "es": say(container, tenant, "es", "Quiero cancelar mi suscripción: el servicio es lento.",
                  agent="soporte", at="2026-11-05T09:00:00Z"),
        "other": say(container, tenant, "other", "What are your opening hours on Sunday?",
                     at="2026-11-06T09:00:00Z"),
    }
    say(container, tenant, "en", "Your subscription is cancelled.", role=Role.ASSISTANT,
        agent="billing", at="2026-11-01T09:00:05Z")
    for session in ("en", "es", "other"):
        persist(container, tenant, session)
    ids["live"] = say(container, tenant, "live", "My parcel with the purple umbrella is late",
                      at="2026-11-20T09:00:00Z")  # stays in Redis
    say(container, f"intruder-{tenant}", "x", "cancel cancel cancel my subscription")
    ids["tenant"] = tenant
    return ids


def search(container: Container, tenant: str, query: str, key: str | None = None):  # noqa: ANN201
    client = create_app(container=container).test_client()
    key = key or container.api_keys.create(tenant)
    return client.get(f"/api/conversations/search/{tenant}?{query}",
                      headers={"Authorization": f"Bearer {key}"})


def test_english_and_spanish_stems_ranked_and_highlighted(container, corpus) -> None:
    tenant = corpus["tenant"]
    english = search(container, tenant, "q=cancelled subscriptions").json
    hits = english["items"]
    assert {h["conversation_id"] for h in hits} == {corpus["en"]}
    assert len(hits) == 2 and hits[0]["rank"] >= hits[1]["rank"]
    for hit in hits:
        marked = [hit["snippet"][start:end].lower() for start, end in hit["highlights"]]
        assert any(m.startswith("cancel") for m in marked), hit
        assert any(m.startswith("subscription") for m in marked), hit
    spanish = search(container, tenant, "q=cancelaciones").json["items"]
    assert {h["conversation_id"] for h in spanish} == {corpus["en"], corpus["es"]}
    accent = search(container, tenant, "q=suscripción lenta").json["items"]
    assert [h["conversation_id"] for h in accent] == [corpus["es"]]


def test_filters_pages_and_the_active_conversations(container, corpus) -> None:
    tenant = corpus["tenant"]
    by_agent = search(container, tenant, "q=cancel&agent_id=soporte").json["items"]
    assert [h["conversation_id"] for h in by_agent] == [corpus["es"]]
    ranged = search(container, tenant, "q=cancel&from=2026-11-02T00:00:00Z").json["items"]
    assert [h["conversation_id"] for h in ranged] == [corpus["es"]]

    key = container.api_keys.create(tenant)
    seen, cursor = [], None
    for _ in range(5):
        page = search(container, tenant, "q=cancel&limit=1" + (f"&cursor={cursor}" if cursor
                                                                  else ""), key).json
        seen += [(h["conversation_id"], h["message_id"]) for h in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == 3 and len(set(seen)) == 3  # two English, one Spanish, none twice

    live = search(container, tenant, "q=purple umbrella").json
    assert live["items"] == []  # not persisted yet
    assert [h["conversation_id"] for h in live["active"]] == [corpus["live"]]
    hit = live["active"][0]
    assert [hit["snippet"][s:e] for s, e in hit["highlights"]] == ["purple", "umbrella"]


def test_tenants_are_isolated_and_bad_input_is_4xx(container, corpus) -> None:
    tenant = corpus["tenant"]
    mine = search(container, tenant, "q=cancel").json["items"]
    assert all(h["conversation_id"] in (corpus["en"], corpus["es"]) for h in mine)
    other_key = container.api_keys.create(f"intruder-{tenant}")
    assert search(container, tenant, "q=cancel", other_key).status_code == 403
    assert search(container, tenant, "").status_code == 422  # q is required
    assert search(container, tenant, "q=x&cursor=bm9wZQ").status_code == 422  # parsed by the schema
    assert search(container, tenant, "q=" + "x" * 501).status_code == 422
    # Syntax a user might type never breaks the query.
    for odd in ("q=%22unclosed", "q=-", "q=or", "q=%26%7C%21(", "q=%27%3B drop table x"):
        assert search(container, tenant, odd).status_code == 200, odd


def test_the_indexed_languages_follow_the_configuration(container, corpus) -> None:
    url = container.settings.database_url
    assert indexed_languages(url) == ("english", "spanish")
    try:
        assert set_search_languages(url, ["english"]) is True
        assert set_search_languages(url, ["english"]) is False  # nothing to do
        # "lento" is only a Spanish stem: with English alone it is a plain word still found,
        # but Spanish inflections are not.
        assert search(container, corpus["tenant"], "q=lentas").json["items"] == []
        with pytest.raises(ValueError, match="no text search configuration"):
            set_search_languages(url, ["klingon"])
    finally:
        set_search_languages(url, ["english", "spanish"])
    assert [h["conversation_id"] for h in search(container, corpus["tenant"],
                                                 "q=lentas").json["items"]] == [corpus["es"]]


def test_the_indexer_moves_vectors_off_the_write_path(container, corpus) -> None:
    """Migration writes no vector; the indexer does, and the answers stay the same."""
    tenant = corpus["tenant"]
    before = search(container, tenant, "q=cancel").json["items"]
    with container.engine.connect() as connection:
        pending = connection.scalar(text(
            "SELECT count(*) FROM search_pending WHERE conversation_id = ANY(:ids)"),
            {"ids": [corpus["en"], corpus["es"]]})
    assert pending >= 2  # noted by the trigger, not indexed by the migration
    assert container.search_indexer.index_pending() >= 2
    with container.engine.connect() as connection:
        vectors = connection.scalar(text(
            "SELECT count(*) FROM message_search WHERE tenant_id = :t"), {"t": tenant})
    assert vectors == 4  # every persisted message of the tenant, once
    assert container.search_indexer.pending() == 0
    after = search(container, tenant, "q=cancel").json["items"]
    assert [(h["message_id"], h["snippet"]) for h in after] == [
        (h["message_id"], h["snippet"]) for h in before]
    # A late message on an indexed conversation is found at once, and indexed once.
    container.repository.append_message(corpus["es"], tenant, container.saver.build_message(
        NewMessage(tenant_id=tenant, session_id="es", agent_id="soporte", role=Role.USER,
                   content="Y además quiero un reembolso", message_id="late-1")))
    assert [h["message_id"] for h in search(container, tenant, "q=reembolso").json["items"]] == [
        "late-1"]
    container.search_indexer.index_pending()
    with container.engine.connect() as connection:
        assert connection.scalar(text(
            "SELECT count(*) FROM message_search WHERE tenant_id = :t"), {"t": tenant}) == 5


def test_an_active_snippet_starts_at_a_word_and_marks_the_match(container, corpus) -> None:
    tenant = corpus["tenant"]
    filler = " ".join(f"word{i}" for i in range(40))  # ~280 characters before the match
    content = f"{filler} then the Zebra crossing was closed, sadly"
    say(container, tenant, "long", content)
    hit = search(container, tenant, "q=zebra").json["active"][0]
    snippet = hit["snippet"]
    start = content.index(snippet)
    assert start > 0 and content[start - 1] == " "  # cut before a word, not inside one
    assert [snippet[s:e] for s, e in hit["highlights"]] == ["Zebra"]


def test_a_message_of_many_distinct_words_is_indexed_and_found(container, corpus) -> None:
    """Its vector is valid, but its index keys (each lexeme tagged with its tenant) went past
    a tsvector's 1 MB: the error rolled the indexer's pass back, every pass, and no tenant's
    message was indexed after it. It is indexed (under the oversize mark), found, and the
    messages after it are indexed."""
    import random

    tenant = corpus["tenant"]
    rng = random.Random(18)

    def word() -> str:  # English and Spanish stem these apart: two lexemes a part
        return "".join(rng.choice("bdfgklmnprstvz") + rng.choice("aeiou") for _ in range(3)) \
            + rng.choice("bdfgklmnprst") + "ing"

    parts: list[str] = ["zebrafinch"]
    while sum(len(p) + 1 for p in parts) < 199_000:
        parts.append("-".join(word() for _ in range(4)))  # keys: 1.09 MB
    huge = " ".join(parts)[:199_900]
    say(container, tenant, "huge", huge, at="2026-11-21T09:00:00Z")
    persist(container, tenant, "huge")
    later = f"later-{tenant}"
    say(container, later, "after", "a wombat after the long one", at="2026-11-22T09:00:00Z")
    persist(container, later, "after")

    container.search_indexer.index_pending()

    assert container.search_indexer.pending() == 0
    assert [h["session_id"] for h in search(container, tenant, "q=zebrafinch").json["items"]] \
        == ["huge"]
    assert [h["session_id"] for h in search(container, later, "q=wombat").json["items"]] == [
        "after"]
    assert search(container, later, "q=zebrafinch").json["items"] == []  # not another's
