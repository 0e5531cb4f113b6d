import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from rig.clock import FakeClock
from rig.commits.gate import (
    Baseline,
    baseline_from,
    junit_xml,
    load_baseline,
    markdown_summary,
    regressions,
    run_gate,
    write_baseline,
)
from rig.errors import InfraError, UsageError
from rig.runner import RunRequest

from .conftest import FakeRun, summary

PASSED = {"name": "relay_alive", "passed": True, "observed": 1, "limit": 1}
FAILED = {"name": "pins_below_ceiling", "passed": False, "observed": 17, "limit": 16,
          "detail": "E2BIG at t=4.2"}


@pytest.fixture
def steady(tmp_path: Path) -> Path:
    path = tmp_path / "steady.yaml"
    path.write_text("name: steady\nduration: 1\n")
    return path


def by_name(results: dict[str, dict]) -> FakeRun:
    return FakeRun(lambda request: results[request.scenario_path.stem])


def test_passing_runs_pass_the_gate(steady: Path):
    run = by_name({"steady": summary("pass", [PASSED], {"kmod.pins": 3})})
    report = run_gate([steady], run)
    assert report.exit_code == 0
    assert [c.status for c in report.cases] == ["pass"]


def test_a_failing_check_fails_the_gate_and_names_the_check(steady: Path, scenario: Path):
    run = by_name({"steady": summary("pass", [PASSED]),
                   "race": summary("fail", [PASSED, FAILED])})
    report = run_gate([steady, scenario], run)
    assert report.exit_code == 1
    assert [c.status for c in report.cases] == ["pass", "fail"]
    assert "check pins_below_ceiling failed: observed 17, limit 16 (E2BIG at t=4.2)" in \
        report.cases[1].failure_lines()


def test_a_counter_above_baseline_tolerance_is_a_regression(steady: Path):
    run = by_name({"steady": summary("pass", [PASSED], {"kmod.pins": 5, "relay.fds": 30})})
    loose = Baseline(0.25, {"steady": {"kmod.pins": 4, "relay.fds": 30}})
    tight = Baseline(0.10, {"steady": {"kmod.pins": 4, "relay.fds": 30}})
    assert run_gate([steady], run, baseline=loose).exit_code == 0
    report = run_gate([steady], run, baseline=tight)
    assert report.exit_code == 1
    assert [r.counter for r in report.cases[0].regressions] == ["kmod.pins"]


def test_regressions_are_pure_arithmetic():
    found = regressions({"a": 11.0, "b": 1.0, "c": 0.0}, {"a": 10, "b": 0, "c": 0, "d": 5},
                        0.05)
    assert [(r.counter, r.limit) for r in found] == [("a", 10.5), ("b", 0.0)]


def test_statistical_scenarios_run_repeat_times_others_once(steady: Path, scenario: Path):
    run = by_name({"steady": summary("pass"), "race": summary("pass")})
    report = run_gate([steady, scenario], run, repeat=3)
    assert [c.name for c in report.cases] == [
        "steady[run 1]", "race[run 1]", "race[run 2]", "race[run 3]"]
    assert [r.scenario_path for r in run.requests] == [steady, scenario, scenario, scenario]


def test_overrides_and_repo_reach_every_run(steady: Path, tmp_path: Path):
    run = by_name({"steady": summary("pass")})
    template = RunRequest(scenario_path=Path(), overrides=("duration=2",),
                          results_root=tmp_path / "res", repo=tmp_path, progress=False)
    run_gate([steady], run, template=template)
    request = run.requests[0]
    assert (request.overrides, request.repo, request.results_root) == (
        ("duration=2",), tmp_path, tmp_path / "res")


def test_an_infrastructure_error_is_an_error_case_not_a_failure(steady: Path):
    def broken(request):
        raise InfraError("relay did not answer ping within 5 s")

    report = run_gate([steady], FakeRun(broken), clock=FakeClock())
    assert report.exit_code == 3
    assert report.cases[0].status == "error"
    assert "relay did not answer ping" in report.cases[0].error


def test_bad_input_stops_the_gate_before_any_run(steady: Path, tmp_path: Path):
    run = by_name({"steady": summary("pass")})
    with pytest.raises(UsageError, match="scenario not found"):
        run_gate([steady, tmp_path / "missing.yaml"], run)
    (tmp_path / "list.yaml").write_text("- a\n")
    with pytest.raises(UsageError, match="must be a mapping"):
        run_gate([tmp_path / "list.yaml"], run)
    with pytest.raises(UsageError, match="--repeat"):
        run_gate([steady], run, repeat=0)
    assert run.requests == []


def test_junit_xml_parses_and_carries_the_failure_text(steady: Path, scenario: Path):
    run = by_name({"steady": summary("pass", [PASSED]), "race": summary("fail", [FAILED])})
    xml = junit_xml(run_gate([steady, scenario], run, repeat=2))
    root = ET.fromstring(xml)
    suite = root.find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("3", "2", "0")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["steady[run 1]", "race[run 1]", "race[run 2]"]
    failure = cases[1].find("failure")
    assert failure is not None
    assert "pins_below_ceiling" in failure.get("message", "")
    assert "E2BIG at t=4.2" in (failure.text or "")
    assert cases[0].find("failure") is None


def test_junit_xml_reads_with_junitparser(steady: Path, tmp_path: Path):
    junitparser = pytest.importorskip("junitparser")
    run = by_name({"steady": summary("fail", [FAILED])})
    path = tmp_path / "junit.xml"
    path.write_text(junit_xml(run_gate([steady], run)))
    xml = junitparser.JUnitXml.fromfile(str(path))
    cases = [case for suite in xml for case in suite]
    assert len(cases) == 1
    assert not cases[0].is_passed
    assert "pins_below_ceiling" in cases[0].result[0].message


def test_markdown_summary_lists_every_run(steady: Path, scenario: Path):
    run = by_name({"steady": summary("pass"), "race": summary("fail", [FAILED])})
    text = markdown_summary(run_gate([steady, scenario], run))
    assert text.startswith("### rig gate FAILED: 1 passed, 1 failed, 0 errors")
    assert "| race[run 1] | fail | check pins_below_ceiling failed" in text


def test_baseline_round_trip_keeps_the_highest_peak(steady: Path, scenario: Path,
                                                   tmp_path: Path):
    peaks = iter([3, 5, 4])
    run = FakeRun(lambda r: summary("pass", peaks={"kmod.pins": next(peaks)}))
    report = run_gate([scenario], run, repeat=3)
    path = tmp_path / "base" / "baseline.json"
    write_baseline(path, baseline_from(report.cases, 0.2))
    loaded = load_baseline(path)
    assert loaded.tolerance == 0.2
    assert loaded.peaks == {"race": {"kmod.pins": 5.0}}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "is not JSON"),
        ('{"schema_version": 9}', "expected schema_version 1"),
        ('{"schema_version": 1, "tolerance": -1, "scenarios": {}}', "tolerance must be"),
        ('{"schema_version": 1, "tolerance": 0.1, "scenarios": {"a": {"x": "high"}}}',
         "scenarios must map"),
    ],
)
def test_a_bad_baseline_is_a_one_line_usage_error(tmp_path: Path, text: str, message: str):
    path = tmp_path / "baseline.json"
    path.write_text(text)
    with pytest.raises(UsageError, match=message):
        load_baseline(path)


def test_a_missing_baseline_says_how_to_make_one(tmp_path: Path):
    with pytest.raises(UsageError, match="--update-baseline"):
        load_baseline(tmp_path / "nope.json")


def race_run(request: RunRequest):
    """Module level, so that it pickles into the local pool: `race` fails, `steady` passes,
    a scenario named `broken` cannot start."""
    from rig.runner import RunOutcome

    name = request.scenario_path.stem
    if name == "broken":
        raise InfraError("relay would not start")
    result = summary("fail", [FAILED]) if name == "race" else summary("pass", [PASSED])
    return RunOutcome(request.results_root / name, result.verdict, result)


def test_a_gate_with_jobs_gives_the_serial_cases_in_the_serial_order(
        steady: Path, scenario: Path, tmp_path: Path):
    from rig.distribute import Dispatch

    broken = tmp_path / "broken.yaml"
    broken.write_text("name: broken\nduration: 1\n")
    scenarios = [scenario, steady, broken]
    serial = run_gate(scenarios, race_run, repeat=3)
    at_once = run_gate(scenarios, race_run, repeat=3, dispatch=Dispatch(jobs=2))
    assert [(c.name, c.status) for c in at_once.cases] == \
        [(c.name, c.status) for c in serial.cases]
    assert [c.name for c in at_once.cases] == [
        "race[run 1]", "race[run 2]", "race[run 3]", "steady[run 1]", "broken[run 1]"]
    assert junit_xml(at_once).replace(" ", "").count("<testcase") == 5
    assert markdown_summary(at_once).splitlines()[4:] == \
        markdown_summary(serial).splitlines()[4:]
