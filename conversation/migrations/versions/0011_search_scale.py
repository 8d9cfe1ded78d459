"""Search at ten times the data: the newest matches by a walk in recency order, the rare ones
by a GIN index whose keys belong to one tenant.

Issue 18 (`make bench-scale`, 10 M messages, the largest tenant holding 22% of them):
- A common word's search ranked every match of the tenant (~166 k of 'refund': ~1 s, growing
  with the data). The search now ranks the tenant's newest 1,000 matches (then the older ones,
  newest first: conversation/queries/search.py) and finds them, for a word common in the
  tenant's recent messages, by walking its messages newest first and stopping at the 1,000th
  match: `ix_message_search_tenant_created` on (tenant_id, created_at) gives that walk.
- A rare phrase's matches come from a GIN index, and the GIN index of 0010 on (tenant_id,
  vector) intersected each match with the tenant's entry (2.2 M row pointers for the largest
  tenant): a leaf page of it per match, 4.4 ms of the 464 matches' 15 ms at 10 M. Its keys now
  are the tenant's own: `message_search_keys(tenant_id, vector)` is the message's lexemes, each
  prefixed with a tag of its tenant (8 hex digits of md5(tenant_id)), and the tag alone; a
  word's entry then lists that tenant's matches only (0.15 ms for the same 464). A query's keys
  (`message_search_keys_query`) are its indexable part (`querytree`: negations dropped, phrases
  as AND, the tag alone when nothing is left), so an index match is necessary, never
  sufficient: the search still checks `tenant_id` (tags of two tenants may collide) and the
  full query on the vector (phrases, negations). Lexemes are cut to 200 characters in both, so
  that a tag never makes a key longer than a lexeme may be. This index replaces 0010's, so the
  indexer maintains one GIN index as before.
- A tsvector holds 1 MB of lexemes, and the tag adds 9 bytes to each: a long message of many
  distinct words (under MAX_MESSAGE_CHARS, its own vector valid) made keys past the limit, and
  its error rolled back every indexer pass (each re-reading the same pending rows: indexing
  stopped for every tenant) and the index build of this upgrade. Such a message's keys are the
  tag and the oversize mark (the tag and '/'), which every query's keys match too: it is a
  candidate of each of its tenant's searches, checked on its vector like any other.

- The search checks the tenant of a page's rows only, not of every candidate (a probe each:
  a third of the rare phrase's time at 10 M): the indexer now indexes a message only in a
  conversation of its tenant, and the upgrade deletes any other row (a message of another
  tenant under a conversation's id, mixed by an older version: never shown, and now not
  indexed either).

Built CONCURRENTLY (outside the migration's transaction), as 0010's, the new beside the old:
saves, migrations and the indexer go on writing, and reads keep an index, while they build
(minutes at 10 M messages). An interrupted build's INVALID index is dropped and built again.

Revision ID: 0011_search_scale
Revises: 0010_scale
Create Date: 2026-12-01
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_search_scale"
down_revision = "0010_scale"
branch_labels = None
depends_on = None

KEYS = """
CREATE OR REPLACE FUNCTION message_search_keys(tenant text, vector tsvector) RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN length(vector) < 1200
                  OR (SELECT sum(9 + octet_length(left(lexeme, 200)))
                      FROM unnest(tsvector_to_array(vector)) AS lexeme) <= 1000000
           THEN array_to_tsvector(ARRAY(
                    SELECT tag || '/' || left(lexeme, 200)
                    FROM unnest(tsvector_to_array(vector)) AS lexeme) || tag)
           ELSE array_to_tsvector(ARRAY[tag, tag || '/']) END
    FROM (SELECT left(md5(tenant), 8) AS tag) AS t
$$
"""
# querytree's text quotes each lexeme, doubling ' and \ inside: the lexeme's first 200
# characters get the tag, the rest is dropped; ' <-> ' and ' <N> ' (phrases) become ' & '.
# Every query's keys match the oversize mark too (the docstring's last paragraph).
KEYS_QUERY = r"""
CREATE OR REPLACE FUNCTION message_search_keys_query(tenant text, query tsquery)
RETURNS tsquery LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CAST(CASE WHEN keys = '' THEN '' ELSE '(' || keys || ') | ''' || tag || '/''' END
                AS tsquery)
    FROM (SELECT tag, CASE WHEN querytree(query) = 'T' THEN '''' || tag || ''''
                ELSE regexp_replace(
                    regexp_replace(querytree(query), ' <(-|[0-9]+)> ', ' & ', 'g'),
                    $re$'((?:[^'\\]|''|\\\\){0,200})(?:[^'\\]|''|\\\\)*'$re$,
                    '''' || tag || '/\1''', 'g') END AS keys
          FROM (SELECT left(md5(tenant), 8) AS tag) AS t) AS k
$$
"""
CREATED = "ix_message_search_tenant_created"
KEYED = "ix_message_search_keys"
PREVIOUS = "ix_message_search_tenant_vector"


def upgrade() -> None:
    op.execute(KEYS)
    op.execute(KEYS_QUERY)
    with op.get_context().autocommit_block():
        _drop_if_invalid(CREATED)
        op.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {CREATED} "
                   "ON message_search (tenant_id, created_at)")
        _drop_if_invalid(KEYED)
        op.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {KEYED} "
                   "ON message_search USING gin (message_search_keys(tenant_id, vector))")
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {PREVIOUS}")
    # The indexer now indexes a message only in a conversation of its tenant, and the search
    # relies on it (a row of another tenant under a conversation's id, mixed by an older
    # version, was never shown; now it is not indexed either). One pass over the table, after
    # the builds: an indexer of the older version runs on while they do (minutes at 10 M).
    op.execute("DELETE FROM message_search s WHERE NOT EXISTS (SELECT 1 FROM conversations c "
               "WHERE c.id = s.conversation_id AND c.tenant_id = s.tenant_id)")


def _drop_if_invalid(name: str) -> None:
    """An interrupted or failed CREATE INDEX CONCURRENTLY leaves its index INVALID (never
    read): IF NOT EXISTS would keep it."""
    invalid = op.get_bind().execute(
        sa.text("SELECT NOT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:name)"),
        {"name": name}).scalar()
    if invalid:
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


def downgrade() -> None:
    with op.get_context().autocommit_block():
        _drop_if_invalid(PREVIOUS)
        op.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {PREVIOUS} "
                   "ON message_search USING gin (tenant_id, vector)")
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {KEYED}")
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {CREATED}")
    op.execute("DROP FUNCTION IF EXISTS message_search_keys_query(text, tsquery)")
    op.execute("DROP FUNCTION IF EXISTS message_search_keys(text, tsvector)")
