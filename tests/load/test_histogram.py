"""The mergeable histogram: bucket layout, percentiles within the stated error, exact merges."""

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rig.load.histogram import (
    RELATIVE_ERROR,
    SUB_BUCKETS,
    Histogram,
    bucket_bounds,
    bucket_of,
    merge_named,
    merged,
)

values_ns = st.integers(min_value=0, max_value=200 * 10**9)  # up to 200 s
samples = st.lists(values_ns, min_size=0, max_size=300)


def filled(values: list[int]) -> Histogram:
    h = Histogram()
    for v in values:
        h.record_ns(v)
    return h


def nearest_rank(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


@given(values_ns)
def test_a_value_lies_in_its_bucket(value):
    low, high = bucket_bounds(bucket_of(value))
    assert low <= value < high
    assert high - low <= max(1, low / SUB_BUCKETS)


def test_small_values_have_exact_buckets_and_indices_grow_with_the_value():
    assert [bucket_of(v) for v in range(2 * SUB_BUCKETS)] == list(range(2 * SUB_BUCKETS))
    indices = [bucket_of(v) for v in range(0, 10**6, 7)]
    assert indices == sorted(indices)
    assert bucket_of(2 * SUB_BUCKETS) == 2 * SUB_BUCKETS  # no gap after the exact range


@given(st.lists(samples, min_size=1, max_size=6))
def test_n_processes_merged_equal_one_that_saw_every_sample(parts):
    whole = filled([v for part in parts for v in part])
    assert merged(filled(p) for p in parts) == whole
    assert merged(filled(p) for p in reversed(parts)) == whole


@given(samples.filter(bool), st.floats(min_value=0, max_value=100))
def test_percentiles_are_within_the_stated_relative_error(values, q):
    h = filled(values)
    true = nearest_rank(values, q)
    got = h.percentile_ns(q)
    assert got is not None
    assert abs(got - true) <= RELATIVE_ERROR * true + 0.5
    assert h.min_ns <= got <= h.max_ns


@given(samples)
def test_count_sum_min_max_are_exact(values):
    h = filled(values)
    assert h.count == len(values)
    assert h.total_ns == sum(values)
    if values:
        assert (h.min_ns, h.max_ns) == (min(values), max(values))
        assert h.percentile_ns(100) == max(values)
        assert h.percentile_ns(0) == min(values)


@given(samples)
def test_json_round_trip(values):
    h = filled(values)
    assert Histogram.from_json(h.to_json()) == h


def test_named_histograms_merge_by_name():
    a = {"invite": Histogram.of([0.001, 0.002]), "bye": Histogram.of([0.004])}
    b = {"invite": Histogram.of([0.003])}
    out = merge_named([a, b])
    assert out["invite"] == Histogram.of([0.001, 0.002, 0.003])
    assert out["bye"] == Histogram.of([0.004])


def test_summary_in_milliseconds():
    rng = random.Random(3)
    values = [rng.uniform(0.0005, 0.05) for _ in range(10_000)]
    s = Histogram.of(values).summary_ms()
    exact = sorted(values)
    assert s["count"] == 10_000
    assert s["p99_ms"] == pytest.approx(exact[9899] * 1e3, rel=RELATIVE_ERROR * 1.01)
    assert s["max_ms"] == pytest.approx(max(values) * 1e3, abs=1e-3)
    assert Histogram().summary_ms()["p50_ms"] is None


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_a_bad_latency_is_refused(bad):
    with pytest.raises(ValueError, match="latency"):
        Histogram().record(bad)


def test_a_histogram_of_another_layout_is_refused():
    data = Histogram.of([0.001]).to_json() | {"sub_bits": 3}
    with pytest.raises(ValueError, match="sub_bits"):
        Histogram.from_json(data)
