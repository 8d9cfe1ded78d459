"""A mergeable quantile sketch (DDSketch's log buckets) for durations in seconds.

Medians cannot be added up across days or agents; bucket counts can. Each value lands in the
bucket `ceil(log_gamma(value))`, and a quantile answers with its bucket's midpoint, so any
quantile is within RELATIVE_ACCURACY of a value of the data (1 %: 61 s may read as 61.4 s).
The rollup stores one sketch per measure and bucket as a small JSON object.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

RELATIVE_ACCURACY = 0.01
_GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_LOG_GAMMA = math.log(_GAMMA)
# Values below a millisecond count as zero: no measure here is that fine.
_SMALLEST = 1e-3
ZERO = "z"


def bucket_of(value: float) -> str:
    if value < _SMALLEST:
        return ZERO
    return str(math.ceil(math.log(value) / _LOG_GAMMA))


def bucket_value(bucket: str) -> float:
    if bucket == ZERO:
        return 0.0
    return 2 * _GAMMA ** int(bucket) / (_GAMMA + 1)


class QuantileSketch:
    """Counts per bucket; add values, merge other sketches, ask nearest-rank quantiles."""

    __slots__ = ("counts",)

    def __init__(self, counts: Mapping[str, int] | None = None) -> None:
        self.counts: dict[str, int] = dict(counts or {})

    @classmethod
    def of(cls, values: Iterable[float | None]) -> QuantileSketch:
        sketch = cls()
        for value in values:
            sketch.add(value)
        return sketch

    def add(self, value: float | None) -> None:
        if value is None:
            return
        bucket = bucket_of(value)
        self.counts[bucket] = self.counts.get(bucket, 0) + 1

    def merge(self, counts: Mapping[str, int]) -> None:
        for bucket, count in counts.items():
            self.counts[bucket] = self.counts.get(bucket, 0) + count

    def __len__(self) -> int:
        return sum(self.counts.values())

    def quantile(self, q: float) -> float | None:
        """The nearest-rank quantile (the ceil(q * n)-th smallest value), None when empty."""
        total = len(self)
        if total == 0:
            return None
        rank = max(1, math.ceil(q * total))
        seen = 0
        ordered = sorted(self.counts, key=lambda b: -math.inf if b == ZERO else int(b))
        for bucket in ordered:
            seen += self.counts[bucket]
            if seen >= rank:
                return bucket_value(bucket)
        return bucket_value(ordered[-1])  # pragma: no cover - rank never exceeds the total
