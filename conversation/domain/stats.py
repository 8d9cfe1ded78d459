"""Statistics (pure): one conversation's figures, and their sums over a bucket of conversations.

Definitions (the README repeats them for the CRM):
- messages in: user messages; messages out: assistant messages (system and tool messages count
  in `messages` only); tokens in/out likewise, as counted at save time.
- duration: first message to last message.
- first response: first user message to the first assistant message at or after it.
- resolution: first message to the session's close (conversations that never closed have none).
- satisfaction: the last numeric `metadata.satisfaction` any message carried (the upstream's
  rating, on the scale it uses) within SATISFACTION_RANGE; other values are not ratings.
- model: the last `metadata.model` an assistant (else any) message named; "unknown" if none.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import numpy as np

from conversation.domain.messages import Message, Role, parse_timestamp
from conversation.domain.sketch import ZERO, QuantileSketch, bucket_value

UNKNOWN_MODEL = "unknown"

# Wide enough for every rating scale in use (1-5 stars, 0-10, 0-100 %, NPS's -100..100), and
# small enough that a day's sum of them stays finite and exact: one 1e308 made the sum inf
# and the day's average null for good. Saves refuse a number outside it (tasks.schemas);
# a value stored before that was checked is left out of the figures here.
SATISFACTION_RANGE = (-100, 100)


def satisfaction_score(value: Any) -> float | None:
    """The rating `value` stands for, or None: a number (not a bool) within the range."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    low, high = SATISFACTION_RANGE
    # Compared before any conversion: NaN compares false, and an int too big for a float
    # is simply out of range.
    return float(value) if low <= value <= high else None


@dataclass(frozen=True)
class ConversationStats:
    message_count: int
    user_messages: int
    assistant_messages: int
    tokens_in: int
    tokens_out: int
    duration_seconds: float
    first_response_seconds: float | None
    satisfaction: float | None
    started_at: str | None
    ended_at: str | None
    resolution_seconds: float | None = None
    model: str = UNKNOWN_MODEL


def _model(messages: Sequence[Message]) -> str:
    named = [m for m in messages if m.metadata and isinstance(m.metadata.get("model"), str)]
    answers = [m for m in named if m.role is Role.ASSISTANT] or named
    return str(answers[-1].metadata["model"])[:128] if answers else UNKNOWN_MODEL


def summarise_conversation(
    messages: Sequence[Message], closed_at: str | None = None
) -> ConversationStats:
    """The figures of one conversation (definitions in the module docstring)."""
    user = [m for m in messages if m.role is Role.USER]
    assistant = [m for m in messages if m.role is Role.ASSISTANT]
    started = parse_timestamp(messages[0].created_at) if messages else None
    ended = parse_timestamp(messages[-1].created_at) if messages else None
    first_response = None
    if user:
        first_question = parse_timestamp(user[0].created_at)
        for message in assistant:
            answered = parse_timestamp(message.created_at)
            if answered >= first_question:
                first_response = (answered - first_question).total_seconds()
                break
    satisfaction = None
    for message in messages:
        score = satisfaction_score(message.metadata.get("satisfaction")
                                   if message.metadata else None)
        if score is not None:
            satisfaction = score
    resolution = None
    if closed_at and started:
        resolution = max(0.0, (parse_timestamp(closed_at) - started).total_seconds())
    return ConversationStats(
        message_count=len(messages),
        user_messages=len(user),
        assistant_messages=len(assistant),
        tokens_in=sum(m.tokens for m in user),
        tokens_out=sum(m.tokens for m in assistant),
        duration_seconds=(ended - started).total_seconds() if started and ended else 0.0,
        first_response_seconds=first_response,
        satisfaction=satisfaction,
        started_at=messages[0].created_at if messages else None,
        ended_at=messages[-1].created_at if messages else None,
        resolution_seconds=resolution,
        model=_model(messages),
    )


@dataclass
class Aggregate:
    """Sums and sketches over conversations: a rollup bucket, or many merged.

    A conversation counts in the bucket of the day it started (its messages, tokens, duration,
    first response, satisfaction) and in that of the day it closed (closed, resolution).
    """

    started: int = 0
    closed: int = 0
    messages: int = 0
    messages_in: int = 0
    messages_out: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    rated: int = 0
    satisfaction_sum: float = 0.0
    duration: QuantileSketch = field(default_factory=QuantileSketch)
    first_response: QuantileSketch = field(default_factory=QuantileSketch)
    resolution: QuantileSketch = field(default_factory=QuantileSketch)

    SKETCHES = ("duration", "first_response", "resolution")
    COUNTS = ("started", "closed", "messages", "messages_in", "messages_out", "tokens_in",
              "tokens_out", "rated", "satisfaction_sum")

    def add_started(self, stats: ConversationStats) -> None:
        self.started += 1
        self.messages += stats.message_count
        self.messages_in += stats.user_messages
        self.messages_out += stats.assistant_messages
        self.tokens_in += stats.tokens_in
        self.tokens_out += stats.tokens_out
        score = satisfaction_score(stats.satisfaction)  # a stored row may predate the check
        if score is not None:
            self.rated += 1
            self.satisfaction_sum += score
        self.duration.add(stats.duration_seconds)
        self.first_response.add(stats.first_response_seconds)

    def add_closed(self, stats: ConversationStats) -> None:
        self.closed += 1
        self.resolution.add(stats.resolution_seconds)

    def add_active(self, conversations: int, messages: int) -> None:
        """Conversations still in Redis: they have started, and hold messages."""
        self.started += conversations
        self.messages += messages

    def merge_row(self, row: Any) -> None:
        """Add a stored rollup row (attributes named as the fields, sketches as counts)."""
        self.merge_counts(row)
        for name in self.SKETCHES:
            getattr(self, name).merge_json(getattr(row, name) or {})

    def merge_counts(self, row: Any) -> None:
        """Add a stored rollup row's sums, not its sketches (see `grouped_percentiles`)."""
        for name in self.COUNTS:
            setattr(self, name, getattr(self, name) + getattr(row, name))

    def to_row(self) -> dict[str, Any]:
        row: dict[str, Any] = {name: getattr(self, name) for name in self.COUNTS}
        row.update({name: getattr(self, name).to_json() for name in self.SKETCHES})
        return row

    def measures(self, percentiles: Mapping[str, dict[str, float | None]] | None = None
                 ) -> dict[str, Any]:
        """The API's figures; `percentiles` per sketch name, when computed elsewhere
        (`grouped_percentiles`), stand for this aggregate's own sketches."""
        if percentiles is None:
            percentiles = {name: _percentiles(getattr(self, name)) for name in self.SKETCHES}
        return {
            "conversations": self.started,
            "closed": self.closed,
            "messages": self.messages,
            "messages_in": self.messages_in,
            "messages_out": self.messages_out,
            "messages_per_conversation": round(self.messages / self.started, 2)
            if self.started
            else None,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "duration_seconds": percentiles["duration"],
            "first_response_seconds": percentiles["first_response"],
            "resolution_seconds": percentiles["resolution"],
            "satisfaction_avg": round(self.satisfaction_sum / self.rated, 3)
            if self.rated
            else None,
            "rated": self.rated,
        }


QUANTILES = (0.5, 0.9)


def _rounded(median: float | None, p90: float | None) -> dict[str, float | None]:
    return {
        "median": None if median is None else round(median, 3),
        "p90": None if p90 is None else round(p90, 3),
    }


def _percentiles(sketch: QuantileSketch) -> dict[str, float | None]:
    return _rounded(*sketch.quantiles(*QUANTILES))


def grouped_percentiles(
    sketches: Sequence[tuple[tuple[int, ...], Mapping[int, int]]], groups: int
) -> list[dict[str, float | None]]:
    """`_percentiles` of each group's merged sketch, for the (groups it counts in, counts)
    given, every sketch in as many groups: the same nearest ranks as QuantileSketch.quantiles,
    found in numpy over all groups at once. A stats answer merges ~90 days x 3 measures of
    sketches of a few hundred buckets each into its periods and totals; bucket by bucket in
    Python that was most of the answer's time."""
    sizes = [len(counts) for _, counts in sketches]
    entries = sum(sizes)
    if entries == 0:
        return [_rounded(None, None) for _ in range(groups)]
    buckets = np.fromiter(chain.from_iterable(c.keys() for _, c in sketches), np.int64, entries)
    counts = np.fromiter(chain.from_iterable(c.values() for _, c in sketches), np.float64, entries)
    # Buckets are few and close together (log buckets of seconds): one column per bucket
    # present, in bucket order, ZERO (below every other) first; no sort of the entries.
    zero = buckets == ZERO
    low = int(buckets[~zero].min()) if not zero.all() else 0
    shifted = np.where(zero, 0, buckets - low + 1)
    present = np.zeros(int(shifted.max()) + 1, dtype=bool)
    present[shifted] = True
    column_of = np.cumsum(present) - 1
    columns = column_of[shifted]
    column_buckets = [ZERO if at == 0 else at + low - 1 for at in np.flatnonzero(present).tolist()]
    width = len(column_buckets)
    # Counts summed per (group, bucket) as float64: exact for sums below 2**53.
    grid = np.zeros(groups * width)
    for member in np.array([member for member, _ in sketches], dtype=np.int64).T:
        grid += np.bincount(np.repeat(member, sizes) * width + columns, weights=counts,
                            minlength=groups * width)
    seen = np.cumsum(grid.reshape(groups, width), axis=1)
    totals = seen[:, -1]
    # max(1, ceil(q * n)) as QuantileSketch.quantiles has it: the same IEEE products.
    found = [np.argmax(seen >= np.maximum(1, np.ceil(q * totals))[:, None], axis=1).tolist()
             for q in QUANTILES]
    return [
        _rounded(bucket_value(column_buckets[median]), bucket_value(column_buckets[p90]))
        if total else _rounded(None, None)
        for total, median, p90 in zip(totals.tolist(), *found, strict=True)
    ]
