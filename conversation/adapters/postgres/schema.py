"""The PostgreSQL tables (SQLAlchemy Core). Created and changed only by Alembic migrations."""
from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()

conversations = Table(
    "conversations",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("tenant_id", String(128), nullable=False),
    Column("session_id", String(128), nullable=False),
    Column("agent_id", String(128), nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("closed_at", DateTime(timezone=True)),
    Column("last_message_at", DateTime(timezone=True)),
    Column("message_count", Integer, nullable=False, server_default="0"),
    Column("summary", Text),
    Column("summary_through", String(300)),
    Column("migrated_at", DateTime(timezone=True)),
    Index("ix_conversations_tenant_created", "tenant_id", "created_at", "id"),
    Index("ix_conversations_tenant_agent_created", "tenant_id", "agent_id", "created_at"),
    Index("ix_conversations_tenant_session", "tenant_id", "session_id"),
    Index("ix_conversations_tenant_last_message", "tenant_id", "last_message_at"),
    Index("ix_conversations_session", "session_id"),
)

# No foreign key to conversations (migration 0005): erasure deletes messages explicitly.
messages = Table(
    "messages",
    metadata,
    Column("conversation_id", String(128), nullable=False),
    Column("id", String(128), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("tenant_id", String(128), nullable=False),
    Column("role", String(16), nullable=False),
    Column("content", Text, nullable=False),
    Column("name", String(128)),
    Column("tokens", Integer, nullable=False),
    Column("encoding", String(32), nullable=False),
    Column("agent_id", String(128)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("metadata", JSONB),
    # Chat Completions' tool calls of an assistant message, and the call a tool message answers.
    Column("tool_calls", JSONB),
    Column("tool_call_id", Text),
    PrimaryKeyConstraint("conversation_id", "id", name="pk_messages"),
    # Every read of a conversation's messages names its owner and this order (migration 0010).
    Index("ix_messages_conversation_order", "conversation_id", "tenant_id", "created_at", "seq",
          "id"),
    Index("ix_messages_tenant_created", "tenant_id", "created_at"),
)

# A message's cost in an encoding other than the one it was counted in at save time, counted
# on first use and kept (CONTRACT: once per encoding); it goes with its message.
message_token_counts = Table(
    "message_token_counts",
    metadata,
    Column("conversation_id", String(128), nullable=False),
    Column("message_id", String(128), nullable=False),
    Column("encoding", String(32), nullable=False),
    Column("tokens", Integer, nullable=False),
    PrimaryKeyConstraint(
        "conversation_id", "message_id", "encoding", name="pk_message_token_counts"
    ),
    ForeignKeyConstraint(
        ["conversation_id", "message_id"],
        ["messages.conversation_id", "messages.id"],
        ondelete="CASCADE",
        onupdate="CASCADE",
        name="fk_message_token_counts_message",
    ),
)

conversation_stats = Table(
    "conversation_stats",
    metadata,
    Column(
        "conversation_id",
        String(128),
        ForeignKey("conversations.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("tenant_id", String(128), nullable=False),
    Column("agent_id", String(128), nullable=False),
    Column("message_count", Integer, nullable=False),
    Column("user_messages", Integer, nullable=False),
    Column("assistant_messages", Integer, nullable=False),
    Column("tokens_in", Integer, nullable=False),
    Column("tokens_out", Integer, nullable=False),
    Column("duration", Float, nullable=False),
    Column("first_response_seconds", Float),
    Column("satisfaction", Float),
    Column("started_at", DateTime(timezone=True)),
    Column("ended_at", DateTime(timezone=True)),
    Column("closed_at", DateTime(timezone=True)),
    Column("resolution_seconds", Float),
    Column("model", String(128), nullable=False, server_default="unknown"),
    Index("ix_conversation_stats_tenant_started", "tenant_id", "started_at"),
    Index("ix_conversation_stats_tenant_closed", "tenant_id", "closed_at"),
    Index("ix_conversation_stats_tenant_agent_started", "tenant_id", "agent_id", "started_at"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("tenant_id", String(128)),
    Column("is_admin", Boolean, nullable=False, server_default="false"),
    Column("label", String(200)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
    Index("ix_api_keys_tenant", "tenant_id"),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("task_id", String(64)),
    Column("task_name", String(128), nullable=False),
    Column("queue", String(64), nullable=False),
    Column("kwargs", JSONB, nullable=False),
    # The whole kwargs a replay sends, zlib-compressed JSON, when `kwargs` cannot hold them
    # exactly (past 256 KB, nested too deep, or text jsonb refuses); `kwargs` is then a preview.
    Column("payload", LargeBinary),
    # False for a letter kept only as a preview (an over-size task): replay skips it.
    Column("replayable", Boolean, nullable=False, server_default="true"),
    Column("error", Text, nullable=False),
    Column("reasons", JSONB),
    Column("traceback", Text),
    Column("attempts", Integer, nullable=False, server_default="1"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("replayed_at", DateTime(timezone=True)),
    Index("ix_dead_letters_created", "created_at"),
)

tenant_retention = Table(
    "tenant_retention",
    metadata,
    Column("tenant_id", String(128), primary_key=True),
    Column("days", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# A session id belongs to the tenant that first used it (migration 0009): the durable record,
# written when a session's first conversation is made, so ownership outlives Redis (an outage,
# an expired session record). Erasing the tenant frees its ids.
session_owners = Table(
    "session_owners",
    metadata,
    Column("session_id", String(128), primary_key=True),
    Column("tenant_id", String(128), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_session_owners_tenant", "tenant_id"),
)

# Written by triggers on conversation_stats (migration 0003): the buckets to recompute.
stats_changes = Table(
    "stats_changes",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("tenant_id", String(128), nullable=False),
    Column("day", Date, nullable=False),
)

ALL = "*"  # agent_id / model of the rows that sum over all agents / all models

stats_daily = Table(
    "stats_daily",
    metadata,
    Column("tenant_id", String(128), nullable=False),
    Column("day", Date, nullable=False),
    Column("agent_id", String(128), nullable=False),
    Column("model", String(128), nullable=False),
    *[
        Column(name, BigInteger, nullable=False, server_default="0")
        for name in ("started", "closed", "messages", "messages_in", "messages_out",
                     "tokens_in", "tokens_out", "rated")
    ],
    Column("satisfaction_sum", Float, nullable=False, server_default="0"),
    *[
        Column(name, JSONB, nullable=False, server_default="{}")
        for name in ("duration", "first_response", "resolution")
    ],
    Column("updated_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("tenant_id", "agent_id", "model", "day", name="pk_stats_daily"),
)

stats_active = Table(
    "stats_active",
    metadata,
    Column("tenant_id", String(128), nullable=False),
    Column("day", Date, nullable=False),
    Column("agent_id", String(128), nullable=False),
    Column("conversations", Integer, nullable=False),
    Column("messages", BigInteger, nullable=False),
    Column("taken_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("tenant_id", "agent_id", "day", name="pk_stats_active"),
)
