"""The pytest plugin's failure message: the scenario, its verdict and each failed check."""

from pathlib import Path

from rig.pytest_plugin import failing_checks_message
from rig.results import read_summary

V1_RUN = Path(__file__).parent / "fixtures" / "run-v1-pin-race"


def test_the_message_names_every_failed_check_and_no_passed_one():
    summary = read_summary(V1_RUN)
    lines = failing_checks_message(summary).splitlines()
    assert lines[0] == "scenario pin-race: fail"
    failed = summary.failed_checks
    assert failed and len(lines) == 1 + len(failed)
    for line, check in zip(lines[1:], failed, strict=True):
        assert line.startswith(f"  {check.name}: observed {check.observed} limit {check.limit} ")
    passed = {c.name for c in summary.checks if c.passed}
    assert not any(line.split(":")[0].strip() in passed for line in lines[1:])
