"""`tracks` on synthetic series: a tracking pair passes, a leak fails with its rate and its
projection, and what only looks like a leak (a lag, a logical drop) does not."""

from collections.abc import Sequence

import pytest

from rig.checks import RunWindow, Verdict, run_checks
from rig.errors import UsageError
from rig.series import Sample, Series
from rig.tracking import (
    Point,
    growth_while_flat,
    pair_points,
    seconds_to_ceiling,
    slope_per_minute,
)

WINDOW = RunWindow(load_start=0.0, load_stop=60.0, end=70.0)


def pair(physical: Sequence[float], logical: Sequence[float], dt: float = 1.0,
         **extra: float) -> Series:
    return Series([Sample(t=i * dt, values={"phys": p, "logi": q, **extra})
                   for i, (p, q) in enumerate(zip(physical, logical, strict=True))])


def tracks(series: Series, run: RunWindow = WINDOW, /, **params) -> Verdict:
    [verdict] = run_checks({"tracks": {"physical": "phys", "logical": "logi", **params}},
                           series, [], run)
    return verdict


def points(physical: Sequence[float], logical: Sequence[float], dt: float = 1.0) -> list[Point]:
    return pair_points(pair(physical, logical, dt), "phys", ("logi",), 1.0)


def test_a_pair_that_tracks_passes():
    logical = [0, 2, 5, 9, 9, 7, 4, 4, 1, 0]
    verdict = tracks(pair(logical, logical), slope=0, ceiling=100)
    assert verdict.passed, verdict.detail
    assert (verdict.observed, verdict.limit) == (0, 0)
    assert "does not approach 100" in verdict.detail


def test_a_ratio_scales_the_logical_side():
    streams = [0, 1, 2, 3, 3, 2]
    assert tracks(pair([2 * s for s in streams], streams), ratio=2.0).passed
    assert not tracks(pair([2 * s for s in streams], streams)).passed


def test_growing_physical_with_flat_logical_fails_with_its_rate_and_projection():
    # one object leaks every 2 s (30 a minute) while the logical side stays at 5
    physical = [5 + i // 2 for i in range(21)]
    verdict = tracks(pair(physical, [5] * 21), ceiling=40, slope=0, window=4.0)
    assert not verdict.passed
    assert verdict.observed == 9 and verdict.limit == 0  # 14 held twice; 15 only once
    assert "drift rate +30/min" in verdict.detail
    assert "from t=0.00 s to t=4.00 s while logi stayed flat" in verdict.detail
    # last physical 15, 25 to go at 30 a minute: 50 s
    assert "phys (15) reaches 40 in ~50 s" in verdict.detail


def test_the_ceiling_can_be_a_counter():
    physical = [i for i in range(11)]
    verdict = tracks(pair(physical, [0] * 11, limit=20), ceiling="limit")
    assert "reaches limit (20) in ~10 s" in verdict.detail


def test_a_ceiling_already_reached_says_so():
    verdict = tracks(pair([0, 5, 10, 10], [0, 0, 0, 0]), ceiling=10)
    assert "phys (10) reached 10" in verdict.detail


def test_slope_alone_fails_when_the_gap_is_within_tolerance():
    physical = [0, 1, 2, 3, 4, 5]
    verdict = tracks(pair(physical, [0] * 6), tolerance=10, slope=30, window=2.0)
    assert not verdict.passed
    assert (verdict.observed, verdict.limit) == ("60/min", "30/min")


def test_growth_while_the_logical_side_grows_is_not_counted_by_the_slope():
    ramp = [0, 1, 2, 3, 4, 5, 6, 7]
    assert growth_while_flat(points(ramp, ramp), window=2.0, flat=0) is None
    assert tracks(pair(ramp, ramp), slope=0, window=2.0).passed


def test_a_drop_in_the_logical_side_alone_is_not_a_leak():
    # streams end at t=4; their targets go one sample later (a removal in flight), and the
    # physical side does not grow while the logical one is flat
    logical = [4, 4, 4, 4, 0, 0, 0, 0]
    physical = [4, 4, 4, 4, 4, 0, 0, 0]
    verdict = tracks(pair(physical, logical), slope=0, window=2.0, persist=2)
    assert verdict.passed, verdict.detail
    assert "no drift lasted 2 samples" in verdict.detail


def test_physical_left_behind_after_a_logical_drop_is_a_leak():
    logical = [4, 4, 4, 4, 0, 0, 0, 0]
    physical = [4, 4, 4, 4, 4, 4, 4, 4]
    verdict = tracks(pair(physical, logical), persist=2)
    assert not verdict.passed and verdict.observed == 4
    assert "drift 4 held 2+ samples from t=4.00 s" in verdict.detail


def test_a_baseline_at_load_start_ignores_what_was_there_before():
    # slab objects of the whole host: 300 already allocated before the run
    series = pair([300, 300, 302, 305, 301, 300], [0, 0, 2, 5, 1, 0])
    assert not tracks(series).passed
    window = RunWindow(load_start=1.0, load_stop=4.0, end=5.0)
    assert tracks(series, window, baseline="load_start").passed


def test_logical_may_be_a_sum_of_counters():
    series = Series([Sample(t=float(i), values={"phys": 3, "a": 1, "b": 2}) for i in range(4)])
    [verdict] = run_checks({"tracks": {"physical": "phys", "logical": ["a", "b"]}},
                           series, [], WINDOW)
    assert verdict.passed and "phys - a + b" in verdict.detail


def test_a_missing_ceiling_counter_fails_and_names_it():
    verdict = tracks(pair([1, 1], [1, 1]), ceiling="nf_conntrack_max")
    assert not verdict.passed and "nf_conntrack_max missing" in verdict.detail


def test_bad_tracks_parameters_are_usage_errors():
    with pytest.raises(UsageError, match="check tracks: ratio"):
        run_checks({"tracks": {"physical": "a", "logical": "b", "ratio": -1}},
                   Series(), [], WINDOW)
    with pytest.raises(UsageError, match="check tracks: logical"):
        run_checks({"tracks": {"physical": "a", "logical": []}}, Series(), [], WINDOW)


def test_growth_while_flat_finds_the_steepest_flat_window():
    # flat logical; physical +1/s for 4 s, then +3/s for 4 s
    physical = [0, 1, 2, 3, 4, 7, 10, 13, 16]
    growth = growth_while_flat(points(physical, [1] * 9), window=4.0, flat=0)
    assert growth is not None
    assert growth.per_minute == pytest.approx(180.0)
    assert (growth.start, growth.stop) == (4.0, 8.0)


def test_growth_while_flat_needs_a_span_as_long_as_the_window():
    assert growth_while_flat(points([0, 5], [0, 0]), window=2.0, flat=0) is None


def test_flat_allows_a_small_logical_wobble():
    logical = [5, 6, 5, 6, 5]
    physical = [5, 7, 9, 11, 13]
    pts = points(physical, logical)
    assert growth_while_flat(pts, window=2.0, flat=0) is None
    growth = growth_while_flat(pts, window=2.0, flat=1)
    assert growth is not None and growth.per_minute == pytest.approx(120.0)


def test_slope_and_projection_numerics():
    assert slope_per_minute([(0, 0), (1, 2), (2, 4)]) == pytest.approx(120.0)
    assert slope_per_minute([(1, 5)]) is None
    assert slope_per_minute([(1, 5), (1, 6)]) is None
    assert seconds_to_ceiling(10, 16, 60.0) == pytest.approx(6.0)
    assert seconds_to_ceiling(16, 16, 60.0) == 0.0
    assert seconds_to_ceiling(10, 16, 0.0) is None
    assert seconds_to_ceiling(10, 16, None) is None


def test_the_drift_and_the_projection_are_values_beside_the_detail():
    physical = [5 + i // 2 for i in range(21)]
    verdict = tracks(pair(physical, [5] * 21), ceiling=40, slope=0, window=4.0)
    assert verdict.values["drift"] == 9 and verdict.values["drift_per_minute"] == 30
    assert verdict.values["growth_per_minute"] == 30
    assert (verdict.values["physical"], verdict.values["logical"]) == (15, 5)
    assert (verdict.values["ceiling"], verdict.values["seconds_to_ceiling"]) == (40, 50)


def test_read_out_noise_within_the_tolerance_is_not_projected():
    # one sample in three reads the physical side a little ahead: a positive rate, no leak
    logical = [0, 4, 8, 12, 16, 20, 24, 28, 32]
    physical = [q + (1 if i % 3 == 2 else 0) for i, q in enumerate(logical)]
    physical[-1] += 1  # the last read is ahead too: the fitted rate is positive
    verdict = tracks(pair(physical, logical), tolerance=1, ceiling=100)
    assert verdict.passed
    assert verdict.values["drift_per_minute"] is not None and verdict.values[
        "drift_per_minute"] > 0
    assert verdict.values["seconds_to_ceiling"] is None
    assert "does not approach 100 (no drift beyond the tolerance)" in verdict.detail
