"""The terminal tables: a check's diagnosis beside its observed value, the diagnosis lines."""

from rig.console import comparison_table, diagnosis_lines, verdict_table
from rig.summary import Summary

RACE = {"name": "make_shard_race", "passed": False, "observed": 2, "limit": 0,
        "detail": "race: ...", "diagnosis": "race"}
GROWTH = {**RACE, "passed": True, "observed": 0, "diagnosis": "growth"}
RACE_NUMBERS = {"calls": 13, "threads": 4, "window_ms": 1.0, "concurrent_clusters": 4,
                "racing_clusters": 3, "phantom_calls": 7, "verdict": "race"}
PROJECTION = {"counter": "kmod.pins", "bursts_per_hour": 30, "warmup_s": 0, "bursts_fitted": 5,
              "start": 2, "last": 7, "per_burst": 1.0, "per_burst_se": 0.1, "per_hour": 30,
              "ceilings": [], "text": "at 30 bursts/hour: ceiling 16 in 3.1 h"}


def summary(verdict: str = "fail", checks: tuple[dict, ...] = (), **diagnosis) -> Summary:
    block = {"make_shard": None, "pin_steps": [], "projection": None,
             "allocation_sites": None, **diagnosis}
    return Summary.model_validate({"run_id": "r", "verdict": verdict, "checks": list(checks),
                                   "diagnosis": block if diagnosis else None})


def test_the_diagnosis_reads_beside_the_observed_value():
    assert "FAIL  make_shard_race  2 (race)" in verdict_table(summary(checks=(RACE,)))
    table = comparison_table(["stock", "fixed"], [summary("fail", (RACE,)),
                                                  summary("pass", (GROWTH,))])
    assert "FAIL (2, race)" in table and "pass (0, growth)" in table


def test_diagnosis_lines_say_race_or_growth_and_the_time_to_the_ceiling():
    lines = diagnosis_lines(summary(make_shard=RACE_NUMBERS, projection=PROJECTION))
    assert lines == [
        "make_shard: race (3 of 4 concurrent cluster(s) raced; 7 of 13 call(s) did not need "
        "their shard)",
        "time to the ceiling: at 30 bursts/hour: ceiling 16 in 3.1 h"]
    assert diagnosis_lines(summary()) == []


def test_pin_steps_without_enough_bursts_to_fit_say_so():
    steps = [{"t": 1.0, "before": 1, "after": 2}]
    assert diagnosis_lines(summary(pin_steps=steps)) == [
        "time to the ceiling: too few bursts after the warm-up to fit"]


def test_a_run_that_only_grew_says_growth():
    growth = {**RACE_NUMBERS, "racing_clusters": 0, "phantom_calls": 0, "verdict": "growth"}
    assert diagnosis_lines(summary("pass", (GROWTH,), make_shard=growth))[0] == (
        "make_shard: growth (0 of 4 concurrent cluster(s) raced; 0 of 13 call(s) did not need "
        "their shard)")
    assert "PASS  make_shard_race  0 (growth)" in verdict_table(summary("pass", (GROWTH,)))


def test_a_death_is_the_first_line_under_the_table():
    died = {"name": "services_alive", "passed": False, "observed": 1, "limit": 0,
            "detail": "relay (pid 7) died with SIGKILL at t=1.20 s; its log ends with: x"}
    assert diagnosis_lines(summary(checks=(died,))) == [
        "died: relay (pid 7) died with SIGKILL at t=1.20 s; its log ends with: x"]
    no_samples = {**died, "observed": None, "detail": "no samples at all"}
    assert diagnosis_lines(summary(checks=(no_samples,))) == []
