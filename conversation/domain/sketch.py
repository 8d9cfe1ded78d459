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
ZERO = -(2**31)  # the zero bucket's index, below every other


def bucket_of(value: float) -> int:
    if value < _SMALLEST:
        return ZERO
    return math.ceil(math.log(value) / _LOG_GAMMA)


def bucket_value(bucket: int) -> float:
    if bucket == ZERO:
        return 0.0
    return 2 * _GAMMA**bucket / (_GAMMA + 1)


class QuantileSketch:
    """Counts per bucket; add values, merge other sketches, ask nearest-rank quantiles.

    Stored as JSON, whose keys are strings: `to_json` and `merge_json` convert.
    """

    __slots__ = ("counts",)

    def __init__(self, counts: Mapping[int, int] | None = None) -> None:
        self.counts: dict[int, int] = dict(counts or {})

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

    def merge(self, counts: Mapping[int, int]) -> None:
        mine = self.counts
        for bucket, count in counts.items():
            mine[bucket] = mine.get(bucket, 0) + count

    def merge_json(self, counts: Mapping[str, int]) -> None:
        mine = self.counts
        for key, count in counts.items():
            bucket = int(key)
            mine[bucket] = mine.get(bucket, 0) + count

    def to_json(self) -> dict[str, int]:
        return {str(bucket): count for bucket, count in self.counts.items()}

    def __len__(self) -> int:
        return sum(self.counts.values())

    def quantile(self, q: float) -> float | None:
        """The nearest-rank quantile (the ceil(q * n)-th smallest value), None when empty."""
        return self.quantiles(q)[0]

    def quantiles(self, *qs: float) -> list[float | None]:
        """Several nearest-rank quantiles (ascending qs) in one pass over the buckets."""
        total = len(self)
        if total == 0:
            return [None] * len(qs)
        ranks = [max(1, math.ceil(q * total)) for q in qs]
        answers: list[float | None] = []
        seen = 0
        for bucket in sorted(self.counts):
            seen += self.counts[bucket]
            while len(answers) < len(ranks) and seen >= ranks[len(answers)]:
                answers.append(bucket_value(bucket))
            if len(answers) == len(ranks):
                break
        return answers
