"""Time to the ceiling on synthetic pin series with known growth; the alert check fails
before the ceiling check does."""

import math

import pytest

from rig.checks import RunWindow, run_checks
from rig.diagnosis.time_to_ceiling import fit_line, pin_steps, project, projection_text
from rig.errors import UsageError
from rig.series import Event, Sample, Series

BURST_EVERY = 2.0


def stepped(per_burst: list[int], base: int = 2, dt: float = 0.1) -> tuple[Series, list[Event]]:
    """Pins at `base`, rising by per_burst[i] 0.3 s after burst i (bursts every 2 s from 1 s)."""
    bursts = [1.0 + i * BURST_EVERY for i in range(len(per_burst))]
    end = bursts[-1] + BURST_EVERY
    samples, level = [], base
    for k in range(int(end / dt) + 1):
        t = round(k * dt, 4)
        level = base + sum(g for b, g in zip(bursts, per_burst, strict=True) if t >= b + 0.3)
        samples.append(Sample(t, {"kmod.pins": float(level)}))
    return Series(samples), [Event(b, "burst", {}) for b in bursts]


def window_of(series: Series) -> RunWindow:
    end = series.samples[-1].t
    return RunWindow(load_start=0.0, load_stop=end, end=end)


def test_fit_line_recovers_a_known_slope_with_zero_error():
    a, b, se = fit_line([3, 5, 7, 9])
    assert (a, b, se) == (3, 2, 0)


def test_projection_of_one_pin_per_burst():
    series, events = stepped([1] * 8)
    p = project(series, events, window_of(series), bursts_per_hour=30, ceilings=(16, 32))
    assert p is not None
    assert p.fit.per_burst == pytest.approx(1.0)
    assert p.fit.start == 2
    assert p.per_hour == pytest.approx(30)
    sixteen, thirty_two = p.etas
    assert sixteen.hours == pytest.approx(14 / 30)
    assert thirty_two.hours == pytest.approx(30 / 30)
    assert sixteen.hours_low == pytest.approx(sixteen.hours)  # a perfect fit: no spread
    assert "at 30 bursts/hour: ceiling 16 in 28 min" in projection_text(p)
    assert "with a ceiling of 32 in 1.0 h" in projection_text(p)
    assert "(± 0.00) over 8 bursts from 2; at 30 bursts/hour: ceiling (MAX_SHM_AREAS 16) in " \
           "28 min (95%: 28 min to 28 min); with MAX_SHM_AREAS 32 in 1.0 h (95%: 1.0 h to " \
           "1.0 h)" in projection_text(p, "MAX_SHM_AREAS")


def test_two_bursts_give_a_time_and_say_there_is_no_range():
    series, events = stepped([1, 1])
    p = project(series, events, window_of(series), bursts_per_hour=30, ceilings=(16,))
    assert p is not None and p.fit.per_burst_se is None
    assert projection_text(p) == ("+1.00 pins per burst (no range from 2 bursts) over 2 "
                                  "bursts from 2; at 30 bursts/hour: ceiling 16 in 28 min")


def test_noisy_growth_gives_a_range_around_the_true_time():
    growth = [0, 2, 1, 0, 1, 2, 0, 1, 1, 0, 2, 1]  # mean 11/12 pins per burst
    series, events = stepped(growth)
    p = project(series, events, window_of(series), bursts_per_hour=60, ceilings=(16,))
    assert p is not None
    [e] = p.etas
    assert p.fit.per_burst_se is not None and p.fit.per_burst_se > 0
    assert e.hours_low is not None and e.hours_high is not None
    assert e.hours_low < e.hours < e.hours_high
    assert e.hours_low < 14 / (11 / 12) / 60 < e.hours_high


def test_warmup_leaves_out_growth_the_load_needs():
    series, events = stepped([3, 2, 0, 0, 0, 0])
    p = project(series, events, window_of(series), bursts_per_hour=30, ceilings=(16,),
                warmup=4.0)
    assert p is not None
    assert p.fit.per_burst == 0
    assert p.fit.start == 7
    assert p.etas[0].hours is None
    assert projection_text(p) == ("no growth after the warm-up: 7 pins over 4 bursts (from 7); "
                                  "no ceiling is reached at any burst rate")


def test_too_few_bursts_give_no_projection():
    series, events = stepped([1])
    assert project(series, events, window_of(series), bursts_per_hour=30,
                   ceilings=(16,)) is None


def test_pin_steps_are_the_rises():
    series, _ = stepped([1, 0, 2])
    steps = pin_steps(series.column("kmod.pins"))
    assert [(s.before, s.after) for s in steps] == [(2, 3), (3, 5)]
    assert math.isclose(steps[0].t, 1.3)


def verdicts_until(series: Series, t: float) -> dict[str, bool]:
    cut = Series([s for s in series.samples if s.t <= t])
    window = RunWindow(0.0, t, t)
    verdicts = run_checks({"pins_below_alert": {}, "pins_below_ceiling": {"ceiling": 16}},
                          cut, [], window)
    return {v.name: v.passed for v in verdicts}


def test_the_alert_fails_before_the_ceiling_check_does():
    series, _ = stepped([2] * 8)  # 2, 4, ... 18 pins
    times = [s.t for s in series.samples]
    alert_fails = next(t for t in times if not verdicts_until(series, t)["pins_below_alert"])
    ceiling_fails = next(t for t in times if not verdicts_until(series, t)["pins_below_ceiling"])
    assert alert_fails < ceiling_fails
    [verdict] = run_checks({"pins_below_alert": {}}, series, [], window_of(series))
    assert "reached the alert 12 of 16 at t=9.30 s, 4.00 s before it hit the ceiling" \
        in verdict.detail


def test_alert_at_or_above_the_ceiling_is_bad_input():
    with pytest.raises(UsageError, match="not below the ceiling"):
        run_checks({"pins_below_alert": {"alert": 16, "ceiling": 16}}, Series(), [],
                   RunWindow(0, 1, 1))


def test_a_step_at_the_first_burst_after_the_warm_up_is_growth():
    # warm-up left 2 pins; the first burst after it adds 3, the next ones nothing
    series, events = stepped([3, 0, 0, 0])
    p = project(series, events, window_of(series), bursts_per_hour=30, ceilings=(16,))
    assert p is not None and p.fit.start == 2 and p.fit.last == 5
    assert p.fit.per_burst > 0
    assert not projection_text(p).startswith("no growth")


def test_a_run_that_died_before_its_first_burst_has_no_projection():
    """The crash's time is when the watch saw it: it can come before any burst."""
    series, events = stepped([1] * 4)
    died = [*events, Event(0.5, "crash", {"service": "relay"})]
    assert project(series, died, window_of(series), bursts_per_hour=30, ceilings=(16,)) is None
