"""Tiers: which tier answers for a conversation, the fallback while Redis is down, and the
tenant check (another tenant's conversation answers like a missing one)."""
from __future__ import annotations

import fakeredis
import pytest

from conversation.adapters.redis import RedisActiveStore
from conversation.domain.messages import Conversation, NewMessage, Role
from conversation.services.ports import ActiveStoreUnavailable
from conversation.services.save import MessageSaver
from conversation.services.tiers import Placed, SaveTiers, Tier, Tiers
from tests.fakes import FakeRepository, WordTokenizer
from tests.unit.test_langchain_outage import DownStore


@pytest.fixture
def active() -> RedisActiveStore:
    return RedisActiveStore(fakeredis.FakeRedis(), prefix="tiers:")


@pytest.fixture
def repository() -> FakeRepository:
    return FakeRepository()


def save(saver: MessageSaver, content: str, message_id: str) -> str:
    return saver.save(NewMessage(tenant_id="acme", session_id="s-1", agent_id="bot",
                                 role=Role.USER, content=content,
                                 message_id=message_id)).conversation_id


def persist(saver: MessageSaver, repository: FakeRepository, conversation_id: str) -> None:
    message = saver.build_message(NewMessage(tenant_id="acme", session_id="s-2", agent_id="bot",
                                             role=Role.USER, content="archived",
                                             message_id="a-1"))
    repository.store_conversation(
        Conversation(id=conversation_id, tenant_id="acme", session_id="s-2", agent_id="bot",
                     created_at=message.created_at), [message], None)  # type: ignore[arg-type]


def test_an_active_conversation_is_read_from_redis_by_its_tenant_only(active, repository) -> None:
    saver = MessageSaver(active, repository, WordTokenizer())
    conversation_id = save(saver, "hello", "m-1")
    tiers = Tiers(active, repository)
    located = tiers.locate("acme", conversation_id)
    assert located is not None and located.tier is Tier.REDIS
    assert [m.content for m in located.history.messages()] == ["hello"]
    assert tiers.locate("other", conversation_id) is None
    assert tiers.locate("acme", "missing") is None
    owned = tiers.owned_history("acme", conversation_id, expected=8)
    assert owned is not None and owned.tier is Tier.REDIS and owned.history.count() == 1
    assert tiers.owned_history("other", conversation_id, expected=8) is None
    assert tiers.session_conversation("acme", "s-1") == conversation_id
    assert tiers.has_message("acme", conversation_id, "m-1")
    assert not tiers.has_message("other", conversation_id, "m-1")


def test_postgresql_answers_while_redis_is_down(active, repository) -> None:
    saver = MessageSaver(active, repository, WordTokenizer())
    persist(saver, repository, "c-archived")
    tiers = Tiers(DownStore(), repository)  # type: ignore[arg-type]
    located = tiers.locate("acme", "c-archived")
    assert located is not None and located.tier is Tier.POSTGRES
    assert [m.content for m in located.history.messages()] == ["archived"]
    assert tiers.locate("other", "c-archived") is None
    owned = tiers.owned_history("acme", "c-archived", expected=8)
    assert owned is not None and owned.tier is Tier.POSTGRES
    assert tiers.owned_history("other", "c-archived", expected=8) is None
    assert tiers.session_conversation("acme", "s-2") == "c-archived"
    assert tiers.active_conversations("acme") == []
    # One PostgreSQL lacks may be live in Redis: neither "missing" nor its messages.
    with pytest.raises(ActiveStoreUnavailable):
        tiers.locate("acme", "c-live-maybe")
    assert tiers.owned_history("acme", "c-live-maybe", expected=8) is None


class DirectArchive(FakeRepository):
    """PostgreSQL's direct save, recorded: what the tiers send there while Redis is down."""

    def __init__(self) -> None:
        super().__init__()
        self.direct: list[tuple[str, str, bool]] = []

    def save_direct(self, conversation: Conversation, message: object,
                    explicit: bool) -> tuple[str, bool]:
        self.direct.append((conversation.id, message.id, explicit))  # type: ignore[attr-defined]
        return conversation.id, True


def test_saves_go_to_postgresql_while_redis_is_down_each_on_its_own() -> None:
    archive = DirectArchive()
    tiers = SaveTiers(DownStore(), archive)  # type: ignore[arg-type]
    saver = MessageSaver(DownStore(), archive, WordTokenizer())  # type: ignore[arg-type]
    items = [(Conversation(id=f"c-{i}", tenant_id="acme", session_id="s-1", agent_id="bot",
                           created_at="2024-06-01T00:00:00.000000Z"),
              saver.build_message(NewMessage(tenant_id="acme", session_id="s-1", agent_id="bot",
                                             role=Role.USER, content="hi",
                                             message_id=f"m-{i}")), i == 1, False)
             for i in range(2)]
    assert tiers.save_many(items) == [Placed(Tier.POSTGRES, "c-0", True),
                                      Placed(Tier.POSTGRES, "c-1", True)]
    assert archive.direct == [("c-0", "m-0", False), ("c-1", "m-1", True)]
    # The saver takes the tiers' answer as it is: the message is stored, in PostgreSQL.
    outcome = saver.save(NewMessage(tenant_id="acme", session_id="s-1", agent_id="bot",
                                    role=Role.USER, content="hi", message_id="m-2"))
    assert (outcome.tier, outcome.stored) == ("postgres", True)
