"""The pytest plugin under pytest-xdist: rig_scenario tests of one session run at the same
time in separate workers, each run on addresses of its own, and all of them pass."""

import json
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]
pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SCENARIO = """\
name: parallel
duration: 4
settle: 0.5
load: {cps: 5, hold: 0.5}
checks:
  relay_alive: {}
  calls_completed: {min_ratio: 0.5}
"""

TESTS = """\
import json, os
import pytest

@pytest.mark.rig_scenario({scenario!r})
def test_{name}(rig_outcome, tmp_path):
    timing = rig_outcome.summary.timing
    with open({record!r}, "a") as out:
        out.write(json.dumps({{"worker": os.environ["PYTEST_XDIST_WORKER"],
                              "start": timing.started, "end": timing.finished}})
                  + "\\n")
"""


def test_two_scenarios_run_in_parallel_workers_without_colliding(
    pytester: pytest.Pytester,
) -> None:
    scenario = pytester.path / "parallel.yaml"
    scenario.write_text(SCENARIO)
    record = pytester.path / "runs.jsonl"
    for name in ("first", "second"):
        pytester.makepyfile(**{f"test_{name}": TESTS.format(scenario=str(scenario), name=name,
                                                            record=str(record))})
    result = pytester.runpytest_subprocess("-n", "2", "-p", "xdist", "-q")
    result.assert_outcomes(passed=2)
    runs = [json.loads(line) for line in Path(record).read_text().splitlines()]
    assert len({run["worker"] for run in runs}) == 2
    first, second = sorted(runs, key=lambda run: run["start"])
    assert second["start"] < first["end"], "the two runs did not overlap in time"
