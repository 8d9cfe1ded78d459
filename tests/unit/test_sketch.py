"""The quantile sketch: within its relative accuracy of the exact nearest-rank quantile, and
merging sketches equals sketching the union."""
from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conversation.domain.sketch import RELATIVE_ACCURACY, QuantileSketch

durations = st.lists(st.floats(min_value=0.0, max_value=3e6, allow_nan=False), min_size=1,
                     max_size=300)


def exact(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


@given(durations, st.sampled_from([0.0, 0.1, 0.5, 0.9, 0.99, 1.0]))
def test_quantiles_are_within_the_relative_accuracy(values: list[float], q: float) -> None:
    estimate = QuantileSketch.of(values).quantile(q)
    truth = exact(values, q)
    assert estimate is not None
    if truth < 1e-3:
        assert estimate == 0.0
    else:
        assert abs(estimate - truth) <= RELATIVE_ACCURACY * truth + 1e-9


@given(durations, durations)
def test_merging_equals_sketching_the_union(left: list[float], right: list[float]) -> None:
    merged = QuantileSketch.of(left)
    merged.merge(QuantileSketch.of(right).counts)
    assert merged.counts == QuantileSketch.of(left + right).counts
    assert len(merged) == len(left) + len(right)


def test_an_empty_sketch_has_no_quantile_and_none_values_are_skipped() -> None:
    assert QuantileSketch().quantile(0.5) is None
    assert QuantileSketch.of([None, None]).quantile(0.5) is None
    assert QuantileSketch.of([None, 10.0]).quantile(0.5) == pytest.approx(10.0, rel=RELATIVE_ACCURACY)

