"""The persistent store: conversations in PostgreSQL through SQLAlchemy 2 and psycopg 3."""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
import sqlalchemy.exc
from sqlalchemy import (
    Engine,
    and_,
    create_engine,
    delete,
    func,
    literal_column,
    or_,
    select,
    text,
    tuple_,
)
from sqlalchemy.dialects.postgresql import insert

from conversation.adapters.sql_schema import (
    api_keys,
    conversation_stats,
    conversations,
    message_token_counts,
    messages,
    session_owners,
    stats_active,
    stats_changes,
    stats_daily,
    tenant_retention,
)
from conversation.domain.errors import ForeignConversation, ForeignSession
from conversation.domain.messages import (
    Conversation,
    ConversationStatus,
    Message,
    Role,
    parse_timestamp,
    utc_timestamp,
)
from conversation.domain.stats import ConversationStats, summarise_conversation
from conversation.services.ports import (
    ActiveStoreUnavailable,
    ConversationRefused,
    MessageRecord,
    SessionOwner,
    Summary,
    TenantConflict,
)

TAIL_CHUNK = 64

# What PostgreSQL (or the rows built for it) says about the data, not the server: the same
# write fails the same way every time (a NUL in jsonb or text, a constraint, a bad timestamp).
# COPY goes through psycopg's cursor, the rest through SQLAlchemy, hence both families.
DATA_ERRORS: tuple[type[BaseException], ...] = (
    sqlalchemy.exc.DataError,
    sqlalchemy.exc.IntegrityError,
    psycopg.DataError,
    psycopg.IntegrityError,
    ValueError,
)


def refusal(error: BaseException) -> ConversationRefused:
    """The port's refusal, with PostgreSQL's own words (message and detail) as the reason."""
    cause = getattr(error, "orig", None) or error
    diag = getattr(cause, "diag", None)
    words = [getattr(diag, "message_primary", None), getattr(diag, "message_detail", None)]
    if not any(words):
        words = (str(cause).strip().splitlines() or [""])[:1]
    reason = " ".join(word for word in words if word)
    return ConversationRefused(f"{type(cause).__name__}: {reason}"[:500])


def sqlalchemy_url(url: str) -> str:
    """Use psycopg 3 whatever driver the URL names (postgres://, postgresql://)."""
    for scheme in ("postgresql+psycopg2://", "postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme) :]
    return url


def make_engine(url: str, *, pool_size: int = 5) -> Engine:
    return create_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=10,
        pool_pre_ping=True,
        connect_args={"connect_timeout": 5},
    )


def _ts(value: str | None) -> datetime | None:
    return parse_timestamp(value) if value else None


def _iso(value: datetime | None) -> str | None:
    return utc_timestamp(value) if value else None


def message_row(conversation_id: str, tenant_id: str, seq: int, message: Message) -> dict[str, Any]:
    return {
        "conversation_id": conversation_id,
        "id": message.id,
        "seq": seq,
        "tenant_id": tenant_id,
        "role": str(message.role),
        "content": message.content,
        "name": message.name,
        "tokens": message.tokens,
        "encoding": message.encoding,
        "agent_id": message.agent_id,
        "created_at": parse_timestamp(message.created_at),
        "metadata": message.metadata or None,
        "tool_calls": message.tool_calls or None,
        "tool_call_id": message.tool_call_id,
    }


def _record(row: Any) -> MessageRecord:
    """A row of _RECORD_COLUMNS as a record."""
    return MessageRecord(*row[:_RECORD_FIELDS])


def _message(row: Any) -> Message:
    return Message(
        id=row.id,
        role=Role(row.role),
        content=row.content,
        created_at=utc_timestamp(row.created_at),
        tokens=row.tokens,
        encoding=row.encoding,
        name=row.name,
        metadata=row.metadata or {},
        agent_id=row.agent_id,
        tool_calls=row.tool_calls or None,
        tool_call_id=row.tool_call_id,
    )


def _conversation(row: Any) -> Conversation:
    return Conversation(
        id=row.id,
        tenant_id=row.tenant_id,
        session_id=row.session_id,
        agent_id=row.agent_id,
        created_at=utc_timestamp(row.created_at),
        status=ConversationStatus(row.status),
        closed_at=_iso(row.closed_at),
        summary=row.summary,
        summary_through=row.summary_through,
    )


def _insert_message(connection: Any, conversation_id: str, tenant_id: str, message: Message) -> bool:
    """Append after the conversation's last position; False for a message id already there."""
    next_seq = connection.scalar(
        select(func.coalesce(func.max(messages.c.seq), -1) + 1).where(
            messages.c.conversation_id == conversation_id
        )
    )
    # RETURNING, not rowcount: the driver's rowcount for ON CONFLICT DO NOTHING is not
    # reliable here (it said 1 for a skipped row).
    inserted = connection.execute(
        insert(messages)
        .values(message_row(conversation_id, tenant_id, next_seq, message))
        .on_conflict_do_nothing()
        .returning(messages.c.id)
    ).first()
    return inserted is not None


# Insert-or-select in one statement: the rows this statement inserted come from RETURNING, the
# others (already owned) from the table. Sessions in id order, so two concurrent claims lock
# their rows in the same order.
_CLAIM_SESSIONS = text("""
WITH wanted AS (
    SELECT * FROM unnest(CAST(:sessions AS text[]), CAST(:tenants AS text[]))
        AS w(session_id, tenant_id)
), claimed AS (
    INSERT INTO session_owners (session_id, tenant_id, created_at)
    SELECT session_id, tenant_id, now() FROM wanted ORDER BY session_id
    ON CONFLICT (session_id) DO NOTHING
    RETURNING session_id, tenant_id
)
SELECT session_id, tenant_id, true AS new FROM claimed
UNION ALL
SELECT o.session_id, o.tenant_id, false FROM session_owners o JOIN wanted USING (session_id)
""")


def _claim_sessions(
    connection: Any, claims: Sequence[tuple[str, str]]
) -> dict[str, SessionOwner]:
    """session id -> its owner, for (tenant, session) claims: a session no tenant owns
    becomes the claiming tenant's (the first claim of a batch wins)."""
    wanted: dict[str, str] = {}
    for tenant_id, session_id in claims:
        wanted.setdefault(session_id, tenant_id)
    if not wanted:
        return {}
    owners = {row.session_id: SessionOwner(row.tenant_id, row.new) for row in connection.execute(
        _CLAIM_SESSIONS, {"sessions": list(wanted), "tenants": list(wanted.values())})}
    missing = [session_id for session_id in wanted if session_id not in owners]
    if missing:
        # Claimed by a transaction that committed while this statement waited on its row: the
        # statement's snapshot predates it, a new statement sees it.
        owners.update((session_id, SessionOwner(tenant_id)) for session_id, tenant_id in
                      connection.execute(
                          select(session_owners.c.session_id, session_owners.c.tenant_id)
                          .where(session_owners.c.session_id.in_(missing))).tuples())
    return owners


def _stored_messages(
    connection: Any, wanted: Sequence[tuple[str, str, str]]
) -> dict[tuple[str, str, str], str]:
    """(tenant, session, message id) -> conversation id, for those of the wanted messages a
    persisted conversation of their session holds. The sessions' conversations first
    (ix_conversations_tenant_session), then their messages by primary key (conversation_id,
    id): two statements, so that no plan can start from the messages (a message id alone, or
    the tenant equated to a constant, would offer a walk over many of them)."""
    by_session: dict[tuple[str, str], set[str]] = {}
    for tenant_id, session_id, message_id in wanted:
        by_session.setdefault((tenant_id, session_id), set()).add(message_id)
    if not by_session:
        return {}
    c, m = conversations.c, messages.c
    held = connection.execute(
        select(c.id, c.tenant_id, c.session_id)
        .where(tuple_(c.tenant_id, c.session_id).in_(sorted(by_session)))
    ).all()
    if not held:
        return {}
    owners = {row.id: (row.tenant_id, row.session_id) for row in held}
    pairs = [(conversation_id, message_id) for conversation_id, session in owners.items()
             for message_id in sorted(by_session[session])]
    found: dict[tuple[str, str, str], str] = {}
    for row in connection.execute(
        select(m.conversation_id, m.id, m.tenant_id)
        .where(tuple_(m.conversation_id, m.id).in_(pairs))
    ):
        tenant_id, session_id = owners[row.conversation_id]
        if row.tenant_id == tenant_id:  # a row another tenant left under the id: not its
            found[(tenant_id, session_id, row.id)] = row.conversation_id
    return found


def _stats_row(conversation: Conversation, stats: ConversationStats) -> dict[str, Any]:
    return {
        "conversation_id": conversation.id,
        "tenant_id": conversation.tenant_id,
        "agent_id": conversation.agent_id,
        "message_count": stats.message_count,
        "user_messages": stats.user_messages,
        "assistant_messages": stats.assistant_messages,
        "tokens_in": stats.tokens_in,
        "tokens_out": stats.tokens_out,
        "duration": stats.duration_seconds,
        "first_response_seconds": stats.first_response_seconds,
        "satisfaction": stats.satisfaction,
        # A conversation with no message yet still belongs to the day it was made.
        "started_at": _ts(stats.started_at or conversation.created_at),
        "ended_at": _ts(stats.ended_at),
        "closed_at": _ts(conversation.closed_at),
        "resolution_seconds": stats.resolution_seconds,
        "model": stats.model,
    }


def _conversation_upsert() -> Any:
    statement = insert(conversations)
    keep = ("id", "tenant_id", "session_id", "created_at")
    return statement.on_conflict_do_update(
        index_elements=[conversations.c.id],
        set_={c.name: statement.excluded[c.name] for c in conversations.c if c.name not in keep},
        # A row of another tenant under the same id is never taken over: the statement skips
        # it and returns no row for it, and the caller refuses that conversation.
        where=conversations.c.tenant_id == statement.excluded.tenant_id,
    ).returning(
        # xmax = 0 on a returned row: this statement inserted it (it did not exist).
        conversations.c.id, literal_column("xmax = 0")
    )


def _stats_upsert() -> Any:
    statement = insert(conversation_stats)
    return statement.on_conflict_do_update(
        index_elements=[conversation_stats.c.conversation_id],
        set_={c.name: statement.excluded[c.name] for c in conversation_stats.c
              if c.name != "conversation_id"},
    )


CONVERSATION_UPSERT = _conversation_upsert()
STATS_UPSERT = _stats_upsert()

_ORDER = (messages.c.created_at, messages.c.seq, messages.c.id)

MESSAGE_COLUMNS = (
    "conversation_id", "id", "seq", "tenant_id", "role", "content", "name", "tokens",
    "encoding", "agent_id", "created_at", "metadata", "tool_calls", "tool_call_id",
)


def copy_messages(
    connection: Any,
    batch: Sequence[tuple[Conversation, Sequence[Message], Any]],
    new_ids: set[str],
) -> None:
    """COPY the batch's messages in.

    A conversation whose row this transaction created (`new_ids`) can have no message rows
    yet (they are only ever written with or after their conversation's), so its messages are
    copied straight into `messages`. The others (a migration run again, say) go through a
    staging table and `INSERT ... SELECT ... ON CONFLICT DO NOTHING`: COPY's speed, with the
    idempotency COPY alone cannot give.
    """
    cursor = connection.connection.driver_connection.cursor()
    columns = ", ".join(MESSAGE_COLUMNS)
    fresh = [item for item in batch if item[0].id in new_ids]
    known = [item for item in batch if item[0].id not in new_ids]
    if fresh:
        _copy_rows(cursor, "messages", columns, fresh)
    if known:
        cursor.execute(
            "CREATE TEMP TABLE IF NOT EXISTS messages_staging "
            "(LIKE messages INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        _copy_rows(cursor, "messages_staging", columns, known)
        cursor.execute(
            f"INSERT INTO messages ({columns}) SELECT {columns} FROM messages_staging "
            "ON CONFLICT DO NOTHING"
        )
        cursor.execute("TRUNCATE messages_staging")


def _copy_rows(
    cursor: Any,
    table: str,
    columns: str,
    batch: Sequence[tuple[Conversation, Sequence[Message], Any]],
) -> None:
    with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        write = copy.write_row
        for conversation, history, _ in batch:
            conversation_id, tenant_id = conversation.id, conversation.tenant_id
            for seq, m in enumerate(history):
                write((
                    conversation_id, m.id, seq, tenant_id, m.role.value, m.content, m.name,
                    m.tokens, m.encoding, m.agent_id, m.created_at,
                    orjson.dumps(m.metadata).decode() if m.metadata else None,
                    orjson.dumps(m.tool_calls).decode() if m.tool_calls else None,
                    m.tool_call_id,
                ))


def _same_lifetime(row: Any, owner: Conversation) -> bool:
    """Whether a conversation the session saved directly belongs with `owner`: begun after
    it, or (begun first: a session's first message went to PostgreSQL while Redis failed
    between the claim and the write, and a later one made the conversation in Redis) not
    closed before it. One closed by an earlier close of the session is a conversation of
    its own."""
    if row.created_at >= parse_timestamp(owner.created_at):
        return True
    return row.closed_at is None or (
        owner.closed_at is not None and row.closed_at >= parse_timestamp(owner.closed_at))


def absorb_outage_conversations(connection: Any, migrated: Sequence[Conversation]) -> None:
    """Messages a session saved straight to PostgreSQL while Redis was down belong to the
    conversation the session had in Redis: when that one is migrated, it takes them over, so
    an outage does not split a conversation. (Saved directly = never migrated.)"""
    sessions = {(c.tenant_id, c.session_id): c for c in migrated}
    c = conversations.c
    candidates = connection.execute(
        select(c.id, c.tenant_id, c.session_id, c.created_at, c.closed_at).where(
            c.migrated_at.is_(None),
            tuple_(c.tenant_id, c.session_id).in_(list(sessions)),
        )
    ).all()
    for row in candidates:
        owner = sessions[(row.tenant_id, row.session_id)]
        if row.id == owner.id or not _same_lifetime(row, owner):
            continue
        m = messages.c
        duplicate = messages.alias("kept")
        connection.execute(
            delete(messages).where(
                m.conversation_id == row.id,
                select(duplicate.c.id)
                .where(duplicate.c.conversation_id == owner.id, duplicate.c.id == m.id)
                .exists(),
            )
        )
        offset = connection.scalar(
            select(func.coalesce(func.max(m.seq), -1) + 1).where(m.conversation_id == owner.id)
        )
        connection.execute(
            messages.update()
            .where(m.conversation_id == row.id)
            .values(conversation_id=owner.id, seq=m.seq + offset)
        )
        connection.execute(delete(conversations).where(c.id == row.id))
        _refresh_stats(connection, owner.id)


def _refresh_stats(connection: Any, conversation_id: str) -> None:
    """Recompute a persisted conversation's counters and stats row from its messages."""
    row = connection.execute(select(conversations).where(conversations.c.id == conversation_id)).first()
    history = [
        _message(r)
        for r in connection.execute(
            select(messages)
            .where(messages.c.conversation_id == conversation_id,
                   messages.c.tenant_id == row.tenant_id)
            .order_by(*_ORDER)
        )
    ]
    stats = summarise_conversation(history, _iso(row.closed_at))
    connection.execute(
        conversations.update()
        .where(conversations.c.id == conversation_id)
        .values(message_count=stats.message_count, last_message_at=_ts(stats.ended_at))
    )
    connection.execute(STATS_UPSERT, [_stats_row(_conversation(row), stats)])


# What a context read needs of a message, in MessageRecord's order (metadata and the rest stay
# in the database), then the keyset columns. PostgreSQL writes the timestamp as utc_timestamp
# does: formatting it in Python was half of turning rows into records.
_RECORD_COLUMNS = (
    messages.c.id, messages.c.role, messages.c.content,
    func.to_char(func.timezone("UTC", messages.c.created_at), 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
    messages.c.tokens, messages.c.encoding, messages.c.name, messages.c.tool_calls,
    messages.c.tool_call_id, messages.c.created_at, messages.c.seq,
)
_RECORD_FIELDS = len(MessageRecord.__struct_fields__) - 1  # all but other_tokens


class SqlHistory:
    """A persisted conversation read from the tail: its owner, the count, the first message
    and the newest `chunk` messages on one connection, then further back in doubling chunks
    if needed (keyset pagination: reads grow with the window, not the history)."""

    def __init__(self, engine: Engine, conversation_id: str, chunk: int = TAIL_CHUNK) -> None:
        self.engine = engine
        self.conversation_id = conversation_id
        self.chunk = chunk
        self.owner: str | None = None
        self._prefetched: tuple[int, Any, list[Any]] | None = None

    def _mine(self) -> Any:
        """The conversation's messages: those of its owner only (a row of another tenant
        under the same id is never read, whatever wrote it)."""
        return and_(messages.c.conversation_id == self.conversation_id,
                    messages.c.tenant_id == self.owner)

    def _prefetch(self) -> tuple[int, Any, list[Any]]:
        if self._prefetched is None:
            count = (
                select(func.count()).select_from(messages)
                .where(messages.c.conversation_id == self.conversation_id,
                       messages.c.tenant_id == conversations.c.tenant_id)
                .scalar_subquery()
            )
            with self.engine.connect() as connection:
                head = connection.execute(
                    select(conversations.c.tenant_id, count)
                    .where(conversations.c.id == self.conversation_id)
                ).first()
                if head is None:
                    self._prefetched = (0, None, [])
                    return self._prefetched
                self.owner = head[0]
                first = connection.execute(
                    select(*_RECORD_COLUMNS).where(self._mine()).order_by(*_ORDER).limit(1)
                ).first()
                tail = connection.execute(self._older_than(None, self.chunk)).all()
            self._prefetched = (int(head[1]), first, tail)
        return self._prefetched

    def _older_than(self, last: Any, limit: int) -> Any:
        """The `limit` messages before `last` (a row; None: the newest), newest first."""
        query = select(*_RECORD_COLUMNS).where(self._mine())
        if last is not None:
            query = query.where(
                or_(
                    messages.c.created_at < last.created_at,
                    and_(messages.c.created_at == last.created_at, messages.c.seq < last.seq),
                    and_(
                        messages.c.created_at == last.created_at,
                        messages.c.seq == last.seq,
                        messages.c.id < last.id,
                    ),
                )
            )
        return query.order_by(*(c.desc() for c in _ORDER)).limit(limit)

    def count(self) -> int:
        return self._prefetch()[0]

    def first(self, encoding: str | None = None) -> MessageRecord | None:
        row = self._prefetch()[1]
        if row is None:
            return None
        record = _record(row)
        if encoding is not None:
            self._attach_counts([record], encoding)
        return record

    def newest_chunks(self, encoding: str | None = None) -> Iterator[list[MessageRecord]]:
        _, _, rows = self._prefetch()
        chunk = self.chunk
        while rows:
            records = [_record(row) for row in rows]
            if encoding is not None:
                self._attach_counts(records, encoding)
            yield records
            if len(rows) < chunk:
                return
            chunk = min(chunk * 2, 4096)
            with self.engine.connect() as connection:
                rows = connection.execute(self._older_than(rows[-1], chunk)).all()

    def _attach_counts(self, records: list[MessageRecord], encoding: str) -> None:
        other = {r.id: r for r in records if r.encoding != encoding}
        if not other:
            return
        t = message_token_counts.c
        with self.engine.connect() as connection:
            stored = connection.execute(
                select(t.message_id, t.tokens).where(
                    t.conversation_id == self.conversation_id,
                    t.encoding == encoding,
                    t.message_id.in_(list(other)),
                )
            ).all()
        for message_id, tokens in stored:
            other[message_id].other_tokens = tokens

    def store_counts(self, encoding: str, counts: Mapping[str, int]) -> None:
        store_token_counts(self.engine, self.conversation_id, encoding, counts)


# Joined to the messages, so a message erased since it was counted is skipped (its count would
# have nothing to belong to); a count another read stored first is kept.
STORE_TOKEN_COUNTS = text(
    "INSERT INTO message_token_counts (conversation_id, message_id, encoding, tokens) "
    "SELECT m.conversation_id, m.id, :encoding, (CAST(:counts AS jsonb) ->> m.id)::int "
    "FROM messages m WHERE m.conversation_id = :conversation_id AND m.id = ANY(:ids) "
    "ON CONFLICT DO NOTHING"
)


def store_token_counts(
    engine: Engine, conversation_id: str, encoding: str, counts: Mapping[str, int]
) -> None:
    if not counts:
        return
    with engine.begin() as connection:
        connection.execute(
            STORE_TOKEN_COUNTS,
            {"conversation_id": conversation_id, "encoding": encoding, "ids": list(counts),
             "counts": orjson.dumps(counts).decode()},
        )


def _dead_letter_match(item: str, conversation: bool) -> str:
    """SQL: the task payload (or batch item) `item` is the erased data's: the tenant's, or for
    a conversation, one naming it (a payload with no tenant, a migration's, too) or one of the
    tenant's session that names no conversation (its message went to the session's)."""
    if not conversation:
        return f"{item} @> jsonb_build_object('tenant_id', CAST(:tenant AS text))"
    return (
        f"(({item} @> jsonb_build_object('conversation_id', CAST(:conversation AS text)) "
        f"AND ({item} @> jsonb_build_object('tenant_id', CAST(:tenant AS text)) "
        f"OR {item} -> 'tenant_id' IS NULL)) "
        f"OR ({item} @> jsonb_build_object('tenant_id', CAST(:tenant AS text), "
        f"'session_id', CAST(:session AS text)) AND {item} -> 'conversation_id' IS NULL))"
    )


def _like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def erase_dead_letters(
    connection: Any,
    tenant_id: str,
    conversation_id: str | None = None,
    session_id: str | None = None,
) -> int:
    """Erase the dead letters that hold the tenant's (or one of its conversation's) data; the
    number of dead letters removed or edited.

    A single task's payload goes whole; a batch (`messages`, `sessions`) loses only the items
    that match, and goes when none is left, so another tenant's items in it stay replayable.
    A payload recorded as a truncated preview cannot be edited: it goes whole when the
    preview names the tenant (or the conversation).
    """
    conversation = conversation_id is not None
    params = {"tenant": tenant_id, "conversation": conversation_id or "",
              "session": session_id or ""}
    emptied: list[int] = []
    edited = 0
    for field in ("messages", "sessions"):
        match = _dead_letter_match("e.item", conversation)
        rows = connection.execute(text(f"""
            UPDATE dead_letters d SET kwargs = jsonb_set(d.kwargs, '{{{field}}}', kept.items)
            FROM (
                SELECT l.id, COALESCE(jsonb_agg(e.item) FILTER (WHERE NOT ({match})),
                                      '[]'::jsonb) AS items
                FROM dead_letters l, jsonb_array_elements(l.kwargs -> '{field}') AS e(item)
                WHERE jsonb_typeof(l.kwargs -> '{field}') = 'array' AND l.payload IS NULL
                GROUP BY l.id HAVING bool_or({match})
            ) kept
            WHERE d.id = kept.id
            RETURNING d.id, jsonb_array_length(kept.items) = 0 AS empty
        """), params).all()
        edited += sum(1 for row in rows if not row.empty)
        emptied += [row.id for row in rows if row.empty]
    if conversation:
        preview = ("(d.kwargs ->> 'preview' LIKE :conversation_like ESCAPE '\\' OR "
                   "(d.kwargs ->> 'preview' LIKE :tenant_like ESCAPE '\\' AND "
                   "d.kwargs ->> 'preview' LIKE :session_like ESCAPE '\\'))")
    else:
        preview = "d.kwargs ->> 'preview' LIKE :tenant_like ESCAPE '\\'"
    params |= {
        "tenant_like": f'%"tenant_id": "{_like(tenant_id)}"%',
        "conversation_like": f'%"conversation_id": "{_like(conversation_id or "")}"%',
        "session_like": f'%"session_id": "{_like(session_id or "")}"%',
        "emptied": emptied,
    }
    # A payload kept out of line (compressed, exact) cannot be edited item by item: a batch
    # holding any erased item goes whole, the other tenants' items with it (erasure wins).
    item = _dead_letter_match("e.item", conversation)
    out_of_line = " OR ".join(
        f"""EXISTS (SELECT 1 FROM jsonb_array_elements(CASE WHEN jsonb_typeof(d.kwargs -> '{field}')
                    = 'array' THEN d.kwargs -> '{field}' ELSE '[]'::jsonb END) AS e(item)
                    WHERE {item})"""
        for field in ("messages", "sessions"))
    removed = connection.execute(text(f"""
        DELETE FROM dead_letters d
        WHERE d.id = ANY(CAST(:emptied AS bigint[])) OR {_dead_letter_match("d.kwargs", conversation)}
           OR (d.kwargs ? '_truncated' AND {preview})
           OR (d.payload IS NOT NULL AND ({out_of_line}))
    """), params).rowcount
    return int(removed) + edited


class SqlRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def store_conversation(
        self,
        conversation: Conversation,
        history: Sequence[Message],
        stats: ConversationStats,
    ) -> list[TenantConflict]:
        return self.store_conversations([(conversation, history, stats)])

    def store_conversations(
        self, batch: Sequence[tuple[Conversation, Sequence[Message], ConversationStats]]
    ) -> list[TenantConflict]:
        """Write many conversations, their messages and stats rows in one transaction.

        Messages go through COPY into a staging table, then one INSERT ... SELECT ... ON
        CONFLICT DO NOTHING: COPY's speed, with the idempotency COPY alone cannot give.
        """
        if not batch:
            return []
        try:
            return self._store_conversations(batch)
        except DATA_ERRORS as error:
            raise refusal(error) from error

    def _store_conversations(
        self, batch: Sequence[tuple[Conversation, Sequence[Message], ConversationStats]]
    ) -> list[TenantConflict]:
        now = datetime.now(UTC)
        rows = [
            {
                "id": conversation.id,
                "tenant_id": conversation.tenant_id,
                "session_id": conversation.session_id,
                "agent_id": conversation.agent_id,
                "status": str(conversation.status),
                "created_at": parse_timestamp(conversation.created_at),
                "closed_at": _ts(conversation.closed_at),
                "last_message_at": _ts(stats.ended_at),
                "message_count": stats.message_count,
                "summary": conversation.summary,
                "summary_through": conversation.summary_through,
                "migrated_at": now,
            }
            for conversation, _, stats in batch
        ]
        with self.engine.begin() as connection:
            # Statements built once and given the rows as parameters: SQLAlchemy compiles
            # them once per process (a VALUES list built per call was compiled per call, the
            # larger part of migrating one short conversation).
            upserted = connection.execute(CONVERSATION_UPSERT, rows).all()
            written = {row[0] for row in upserted}
            new_ids = {row[0] for row in upserted if row[1]}
            # No row back: PostgreSQL holds the id for another tenant. That conversation is
            # refused whole (its messages are never copied under the other tenant's row).
            conflicts = [TenantConflict(c.id, c.tenant_id) for c, _, _ in batch
                         if c.id not in written]
            if conflicts:
                batch = [item for item in batch if item[0].id in written]
            if any(history for _, history, _ in batch):
                copy_messages(connection, batch, new_ids)
            if batch:
                connection.execute(
                    STATS_UPSERT,
                    [_stats_row(conversation, stats) for conversation, _, stats in batch],
                )
                absorb_outage_conversations(connection, [c for c, _, _ in batch])
                # Sessions made before session_owners existed (or on a path that does not claim)
                # are owned from their migration on; an owned one stays as it is.
                _claim_sessions(connection, [(c.tenant_id, c.session_id) for c, _, _ in batch])
        return conflicts

    def store_token_counts(
        self, conversation_id: str, encoding: str, counts: Mapping[str, int]
    ) -> None:
        store_token_counts(self.engine, conversation_id, encoding, counts)

    def append_message(self, conversation_id: str, tenant_id: str, message: Message) -> bool:
        """Append to a persisted conversation; False when the message id is already there."""
        with self.engine.begin() as connection:
            conversation = connection.execute(
                select(conversations).where(conversations.c.id == conversation_id).with_for_update()
            ).first()
            if conversation is None:
                raise LookupError(f"conversation {conversation_id} is not persisted")
            if conversation.tenant_id != tenant_id:
                raise ForeignConversation(f"conversation {conversation_id} belongs to another tenant")
            inserted = _insert_message(connection, conversation_id, tenant_id, message)
            if inserted:
                _refresh_stats(connection, conversation_id)
        return inserted

    def save_direct(
        self, conversation: Conversation, message: Message, explicit: bool
    ) -> tuple[str, bool]:
        """Redis is down: the message goes to the session's conversation in PostgreSQL.

        Without a conversation id, that is the session's newest conversation saved this way
        and still open, or a new one. Counters are kept; the statistics row is computed when
        the conversation closes.
        """
        c = conversations.c
        with self.engine.begin() as connection:
            # Serialise the session's direct saves, so two workers make one conversation.
            connection.execute(
                select(func.pg_advisory_xact_lock(func.hashtext(
                    conversation.tenant_id + ":" + conversation.session_id)))
            )
            # The session's durable owner, claimed now if it has none: a session live only in
            # the Redis we cannot reach was claimed here when its first conversation was made.
            owner = _claim_sessions(
                connection, [(conversation.tenant_id, conversation.session_id)]
            ).get(conversation.session_id)
            if owner is None or owner.tenant_id != conversation.tenant_id:
                raise ForeignSession(f"session {conversation.session_id} belongs to another tenant")
            # Stored before by any of the session's conversations (a redelivery or a replay,
            # whichever tier it went to then): a duplicate.
            key = (conversation.tenant_id, conversation.session_id, message.id)
            previous = _stored_messages(connection, [key])
            if previous:
                return previous[key], False
            if explicit:
                target = connection.execute(select(c.id, c.tenant_id).where(
                    c.id == conversation.id)).first()
                if target is None:
                    # Producers choose conversation ids, and the id may be live in the Redis
                    # we cannot reach, perhaps for another tenant: made here, it would become
                    # that tenant's at migration. Not known here = not decidable now: a
                    # transient failure, retried (then dead-lettered for a replay).
                    raise ActiveStoreUnavailable(
                        f"conversation {conversation.id} is not in PostgreSQL and the active "
                        "store, which may hold it, is unreachable")
                if target.tenant_id != conversation.tenant_id:
                    raise ForeignConversation(
                        f"conversation {conversation.id} belongs to another tenant")
                conversation_id = conversation.id
            else:
                conversation_id = connection.scalar(
                    select(c.id)
                    .where(
                        c.tenant_id == conversation.tenant_id,
                        c.session_id == conversation.session_id,
                        c.status == "active",
                        c.migrated_at.is_(None),
                    )
                    .order_by(c.created_at.desc())
                    .limit(1)
                )
            if conversation_id is None:
                conversation_id = conversation.id
                connection.execute(insert(conversations).values(
                    id=conversation_id, tenant_id=conversation.tenant_id,
                    session_id=conversation.session_id, agent_id=conversation.agent_id,
                    status="active", created_at=parse_timestamp(message.created_at),
                    message_count=0,
                ).on_conflict_do_nothing())
            inserted = _insert_message(connection, conversation_id, conversation.tenant_id, message)
            if inserted:
                connection.execute(
                    conversations.update()
                    .where(c.id == conversation_id)
                    .values(
                        message_count=c.message_count + 1,
                        last_message_at=func.greatest(
                            c.last_message_at, parse_timestamp(message.created_at)),
                    )
                )
        return conversation_id, inserted

    def claim_sessions(self, claims: Sequence[tuple[str, str]]) -> dict[str, SessionOwner]:
        """session id -> owner for (tenant, session) claims; an unowned session becomes the
        claiming tenant's (`new`), in one statement."""
        with self.engine.begin() as connection:
            return _claim_sessions(connection, claims)

    def stored_messages(
        self, wanted: Sequence[tuple[str, str, str]]
    ) -> dict[tuple[str, str, str], str]:
        """(tenant, session, message id) -> conversation id, for those of the wanted messages
        a persisted conversation of their session holds."""
        with self.engine.connect() as connection:
            return _stored_messages(connection, wanted)

    def close_active(self, tenant_id: str, session_id: str, closed_at: str) -> list[str]:
        """Close the session's conversations saved directly during an outage."""
        c = conversations.c
        with self.engine.begin() as connection:
            closed = list(connection.scalars(
                conversations.update()
                .where(c.tenant_id == tenant_id, c.session_id == session_id,
                       c.status == "active", c.migrated_at.is_(None))
                .values(status="closed", closed_at=parse_timestamp(closed_at))
                .returning(c.id)
            ))
            for conversation_id in closed:
                _refresh_stats(connection, conversation_id)
        return closed

    def get_conversation(self, conversation_id: str) -> Conversation | None:
        with self.engine.connect() as connection:
            row = connection.execute(
                select(conversations).where(conversations.c.id == conversation_id)
            ).first()
        return _conversation(row) if row else None

    def owned_history(
        self, conversation_id: str, expected: int = TAIL_CHUNK
    ) -> tuple[str | None, SqlHistory]:
        """The owner (None: not here) and the newest `expected` messages, read together."""
        history = SqlHistory(self.engine, conversation_id, max(1, expected))
        history.count()
        return history.owner, history

    def messages(self, conversation_id: str) -> list[Message]:
        """The conversation's messages, its owner's only (see SqlHistory._mine)."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(messages)
                .join(conversations, and_(conversations.c.id == messages.c.conversation_id,
                                          conversations.c.tenant_id == messages.c.tenant_id))
                .where(messages.c.conversation_id == conversation_id)
                .order_by(*_ORDER)
            ).all()
        return [_message(r) for r in rows]

    def has_message(self, tenant_id: str, conversation_id: str, message_id: str) -> bool:
        """Whether the tenant's conversation holds the message (a primary-key lookup)."""
        with self.engine.connect() as connection:
            return connection.execute(
                select(messages.c.id).where(messages.c.conversation_id == conversation_id,
                                            messages.c.id == message_id,
                                            messages.c.tenant_id == tenant_id)
            ).first() is not None

    def latest_conversation_for_session(self, tenant_id: str, session_id: str) -> str | None:
        with self.engine.connect() as connection:
            return connection.scalar(
                select(conversations.c.id)
                .where(
                    conversations.c.tenant_id == tenant_id,
                    conversations.c.session_id == session_id,
                )
                .order_by(conversations.c.created_at.desc())
                .limit(1)
            )

    def summary(self, conversation_id: str) -> Summary | None:
        with self.engine.connect() as connection:
            row = connection.execute(
                select(conversations.c.summary, conversations.c.summary_through).where(
                    conversations.c.id == conversation_id
                )
            ).first()
        if row is None or row.summary is None or row.summary_through is None:
            return None
        return Summary(row.summary, row.summary_through)

    def save_summary(self, conversation_id: str, summary: Summary) -> bool:
        with self.engine.begin() as connection:
            return bool(
                connection.execute(
                    conversations.update()
                    .where(conversations.c.id == conversation_id)
                    .values(summary=summary.text, summary_through=summary.through)
                ).rowcount
            )

    # --- erasure and retention ------------------------------------------------------------

    def erase_conversation(self, conversation_id: str) -> bool:
        """Delete the conversation (its stats row cascades), then its messages (their search
        vectors cascade). The conversation first: an append holding its row lock finishes
        before, and its message is then deleted too; one starting after finds no conversation."""
        with self.engine.begin() as connection:
            removed = connection.execute(
                delete(conversations).where(conversations.c.id == conversation_id)
            ).rowcount
            connection.execute(delete(messages).where(messages.c.conversation_id == conversation_id))
        return bool(removed)

    def erase_tenant(self, tenant_id: str) -> dict[str, int]:
        """Delete all of a tenant's conversations (with messages and stats), its dead letters
        (they hold message content) and its retention setting; revoke its API keys."""
        with self.engine.begin() as connection:
            removed = connection.execute(
                delete(conversations).where(conversations.c.tenant_id == tenant_id)
            ).rowcount
            connection.execute(delete(messages).where(messages.c.tenant_id == tenant_id))
            letters = erase_dead_letters(connection, tenant_id)
            # Its keys stop working now (revoked, not deleted: the audit trail stays).
            keys = connection.execute(
                api_keys.update()
                .where(api_keys.c.tenant_id == tenant_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            ).rowcount
            connection.execute(
                delete(tenant_retention).where(tenant_retention.c.tenant_id == tenant_id)
            )
            # Its session ids are free again: nothing of the tenant remains for them to guard.
            connection.execute(
                delete(session_owners).where(session_owners.c.tenant_id == tenant_id)
            )
            # The rollup goes now rather than at the next aggregation; after the deletes
            # above, whose triggers noted the tenant's buckets as changed.
            for table in (stats_daily, stats_active, stats_changes):
                connection.execute(delete(table).where(table.c.tenant_id == tenant_id))
        return {"conversations": int(removed), "dead_letters": letters, "api_keys": int(keys)}

    def erase_dead_letters(
        self, tenant_id: str, conversation_id: str | None = None, session_id: str | None = None
    ) -> int:
        """The dead letters (or batch items) of a conversation, or of a whole tenant."""
        with self.engine.begin() as connection:
            return erase_dead_letters(connection, tenant_id, conversation_id, session_id)

    def conversation_ids(self, tenant_id: str) -> list[str]:
        with self.engine.connect() as connection:
            return list(
                connection.scalars(
                    select(conversations.c.id).where(conversations.c.tenant_id == tenant_id)
                )
            )

    def set_retention(self, tenant_id: str, days: int | None) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                delete(tenant_retention).where(tenant_retention.c.tenant_id == tenant_id)
            )
            if days is not None:
                connection.execute(
                    tenant_retention.insert().values(
                        tenant_id=tenant_id, days=days, updated_at=datetime.now(UTC)
                    )
                )

    def retention(self) -> dict[str, int]:
        with self.engine.connect() as connection:
            return {r.tenant_id: r.days for r in connection.execute(select(tenant_retention))}

    def expired_conversations(self, tenant_id: str, before: datetime, limit: int) -> list[str]:
        """Persisted conversations whose last message (or start) is older than `before`."""
        last = func.coalesce(conversations.c.last_message_at, conversations.c.created_at)
        with self.engine.connect() as connection:
            return list(
                connection.scalars(
                    select(conversations.c.id)
                    .where(conversations.c.tenant_id == tenant_id, last < before)
                    .limit(limit)
                )
            )

    def ping(self) -> bool:
        with self.engine.connect() as connection:
            return connection.scalar(select(1)) == 1
