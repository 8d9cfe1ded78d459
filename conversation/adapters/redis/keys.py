"""The contract's Redis key names (CONTRACT.md section 2), hash-tagged for Redis Cluster.

Keys that one atomic step touches share a Redis Cluster slot through a hash tag: everything of
a conversation is tagged `{conversation_id}`, everything of a session `{session_id}`. The global
sets (`active_sessions`, the per-tenant active index) are updated in steps of their own.
"""
from __future__ import annotations

# How long a migrated conversation leaves a marker behind, so late messages find PostgreSQL
# without asking it; after that the save path asks PostgreSQL itself.
MIGRATED_MARKER_SECONDS = 7 * 24 * 3600
# How long a released session remembers its tenant and generation.
RELEASED_SESSION_SECONDS = 30 * 24 * 3600
TAIL_CHUNK = 64


class RedisKeys:
    """The contract's key names, hash-tagged for Redis Cluster, under an optional prefix."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix

    def conversation(self, tenant_id: str, conversation_id: str) -> str:
        return f"{self.prefix}conversation:{tenant_id}:{{{conversation_id}}}"

    def messages(self, conversation_id: str) -> str:
        return f"{self.prefix}messages:{{{conversation_id}}}"

    def message_ids(self, conversation_id: str) -> str:
        return f"{self.prefix}message_ids:{{{conversation_id}}}"

    def last_at(self, conversation_id: str) -> str:
        return f"{self.prefix}last_at:{{{conversation_id}}}"

    def owner(self, conversation_id: str) -> str:
        return f"{self.prefix}owner:{{{conversation_id}}}"

    def token_counts(self, conversation_id: str) -> str:
        """Hash: "encoding|message id" -> the message's cost in an encoding other than the one
        it was counted in at save time (counted on first use)."""
        return f"{self.prefix}token_counts:{{{conversation_id}}}"

    def migrated(self, conversation_id: str) -> str:
        return f"{self.prefix}migrated:{{{conversation_id}}}"

    def summary(self, conversation_id: str) -> str:
        return f"{self.prefix}summary:{{{conversation_id}}}"

    def arrival(self, tenant_id: str, message_id: str) -> str:
        """Pub/sub channel announcing that the tenant's message was stored."""
        return f"{self.prefix}arrived:{tenant_id}:{message_id}"

    def lock(self, name: str) -> str:
        return f"{self.prefix}lock:{name}"

    def summary_requested(self, conversation_id: str) -> str:
        return f"{self.prefix}summary_requested:{{{conversation_id}}}"

    def session_mapping(self, session_id: str) -> str:
        return f"{self.prefix}session_mapping:{{{session_id}}}"

    def session_state(self, session_id: str) -> str:
        return f"{self.prefix}session_state:{{{session_id}}}"

    @property
    def active_sessions(self) -> str:
        return f"{self.prefix}active_sessions"

    @property
    def activity(self) -> str:
        """Sorted set: conversation id -> when its last message arrived (epoch seconds)."""
        return f"{self.prefix}conversation_activity"

    @property
    def closed_sessions(self) -> str:
        """Sorted set: session id -> close time (epoch seconds), for the lost-timer sweep."""
        return f"{self.prefix}closed_sessions"

    @property
    def ready_migrations(self) -> str:
        """Sorted set: "conversation_id:generation" -> when its timer fired, until migrated."""
        return f"{self.prefix}ready_migrations"

    def close_bucket(self, second: int) -> str:
        """Set: "conversation_id:generation:closed epoch" of the sessions whose grace ends
        within `second` (epoch), until its shared timer hands them to the migration."""
        return f"{self.prefix}close_bucket:{{closes-{second}}}"

    def close_timer(self, second: int) -> str:
        """Present while a timer task for `second` is scheduled and has not looked yet."""
        return f"{self.prefix}close_timer:{{closes-{second}}}"

    @property
    def quarantined(self) -> str:
        """Hash: conversation id -> why migration set it aside (PostgreSQL refused it)."""
        return f"{self.prefix}quarantined_conversations"

    def tenant_active(self, tenant_id: str) -> str:
        return f"{self.prefix}active_conversations:{tenant_id}"

    def conversation_keys(self, tenant_id: str, conversation_id: str) -> list[str]:
        return [
            self.messages(conversation_id),
            self.message_ids(conversation_id),
            self.last_at(conversation_id),
            self.owner(conversation_id),
            self.migrated(conversation_id),
            self.conversation(tenant_id, conversation_id),
            self.summary(conversation_id),
            self.token_counts(conversation_id),
        ]
