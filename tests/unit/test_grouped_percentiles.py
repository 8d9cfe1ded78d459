"""grouped_percentiles (the stats answer's percentiles, in numpy) gives what merging the
same sketches into QuantileSketch and asking its quantiles gives, group by group."""
from __future__ import annotations

import random

import pytest

from conversation.domain.sketch import ZERO, QuantileSketch, bucket_of
from conversation.domain.stats import _percentiles, grouped_percentiles


def _expected(sketches: list[tuple[tuple[int, ...], dict[int, int]]], groups: int) -> list:
    merged = [QuantileSketch() for _ in range(groups)]
    for members, counts in sketches:
        for group in members:
            merged[group].merge(counts)
    return [_percentiles(sketch) for sketch in merged]


@pytest.mark.parametrize("seed", range(40))
def test_grouped_percentiles_equal_merged_sketches(seed: int) -> None:
    rng = random.Random(seed)
    groups = rng.randint(1, 12)
    spread = rng.choice((5, 600, 3_000))
    sketches = []
    for _ in range(rng.randint(0, 30)):
        counts = {rng.randint(-400, spread): rng.randint(1, 10**rng.randint(0, 6))
                  for _ in range(rng.choice((0, 1, 3, 50, 400)))}
        if rng.random() < 0.3:
            counts[ZERO] = rng.randint(1, 50)
        sketches.append(((rng.randrange(groups), rng.randrange(groups)), counts))
    assert grouped_percentiles(sketches, groups) == _expected(sketches, groups)


def test_only_zero_buckets_and_empty_groups() -> None:
    sketches = [((0, 2), {ZERO: 3}), ((0, 2), {}), ((2, 2), {bucket_of(61.0): 1})]
    assert grouped_percentiles(sketches, 4) == _expected(sketches, 4)
    assert grouped_percentiles(sketches, 4)[1] == {"median": None, "p90": None}
    assert grouped_percentiles([], 2) == [{"median": None, "p90": None}] * 2
