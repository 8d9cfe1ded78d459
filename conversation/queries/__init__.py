"""The read side (cosmicpython's views): what the API and the operators read, built by
bootstrap. Plain SQL where that is simpler; one conversation, or a tenant's active ones,
through services.tiers (which tier holds it, and what stands in while Redis is down)."""
from __future__ import annotations

from dataclasses import dataclass

from conversation.queries.listing import ConversationListing
from conversation.queries.search import ConversationSearch
from conversation.queries.stats import TenantStatistics
from conversation.queries.transcripts import Transcripts


@dataclass(frozen=True)
class ReadQueries:
    """The API's reads, under its statement timeout."""

    transcripts: Transcripts
    listing: ConversationListing
    stats: TenantStatistics
    search: ConversationSearch
