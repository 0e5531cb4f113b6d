"""The terminal tables: a check's diagnosis beside its observed value, the diagnosis lines."""

from rig.console import comparison_table, diagnosis_lines, verdict_table

RACE = {"name": "make_shard_race", "passed": False, "observed": 2, "limit": 0,
        "detail": "race: ...", "diagnosis": "race"}
GROWTH = {**RACE, "passed": True, "observed": 0, "diagnosis": "growth"}


def test_the_diagnosis_reads_beside_the_observed_value():
    assert "FAIL  make_shard_race  2 (race)" in verdict_table({"checks": [RACE]})
    table = comparison_table(["stock", "fixed"], [{"verdict": "fail", "checks": [RACE]},
                                                  {"verdict": "pass", "checks": [GROWTH]}])
    assert "FAIL (2, race)" in table and "pass (0, growth)" in table


def test_diagnosis_lines_say_race_or_growth_and_the_time_to_the_ceiling():
    summary = {"diagnosis": {
        "make_shard": {"verdict": "race", "racing_clusters": 3, "concurrent_clusters": 4,
                       "phantom_calls": 7, "calls": 13},
        "projection": {"text": "at 30 bursts/hour: ceiling 16 in 3.1 h"}}}
    assert diagnosis_lines(summary) == [
        "make_shard: race (3 of 4 concurrent cluster(s) raced; 7 of 13 call(s) did not need "
        "their shard)",
        "time to the ceiling: at 30 bursts/hour: ceiling 16 in 3.1 h"]
    assert diagnosis_lines({}) == []
