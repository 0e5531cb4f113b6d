"""`rig gate`: the CI gate over a set of scenarios.

Each scenario runs once, or `repeat` times when it is statistical (it fires bursts, so its
races may or may not show in one run). A run fails the gate when a check fails or a counter's
peak exceeds the baseline by more than the baseline's relative tolerance. The outcome is data
(`GateReport`) first; JUnit XML and a markdown summary are renderings of it.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from rig.atomic import write_json_atomic, write_text_atomic
from rig.clock import Clock
from rig.distribute import SERIAL, Dispatch, open_pool
from rig.errors import InfraError, UsageError
from rig.runner import RunOutcome, RunRequest
from rig.scenario import read_yaml
from rig.summary import CheckEntry

BASELINE_SCHEMA = 1
DEFAULT_TOLERANCE = 0.10
RunFn = Callable[[RunRequest], RunOutcome]


@dataclass(frozen=True)
class ScenarioInfo:
    path: Path
    name: str
    statistical: bool


@dataclass(frozen=True)
class Baseline:
    """Peak of each counter per scenario name; a run regresses above peak * (1 + tolerance)."""

    tolerance: float
    peaks: Mapping[str, Mapping[str, float]]


@dataclass(frozen=True)
class Regression:
    counter: str
    baseline: float
    observed: float
    limit: float

    def text(self) -> str:
        return (f"{self.counter} peak {self.observed:g} > {self.limit:g} "
                f"(baseline {self.baseline:g})")


@dataclass(frozen=True)
class GateCase:
    """One run of one scenario, as the gate judged it."""

    scenario: str
    run: int
    verdict: str  # pass | fail | error (the run's own verdict, or error when it did not run)
    seconds: float
    folder: Path | None = None
    failed_checks: tuple[CheckEntry, ...] = ()
    regressions: tuple[Regression, ...] = ()
    peaks: Mapping[str, float] = field(default_factory=dict)
    error: str = ""

    @property
    def status(self) -> str:
        if self.error or self.verdict == "error":
            return "error"
        return "fail" if self.failed_checks or self.regressions or self.verdict != "pass" \
            else "pass"

    @property
    def name(self) -> str:
        return f"{self.scenario}[run {self.run}]"

    def failure_lines(self) -> list[str]:
        lines = [f"check {c.name} failed: observed {c.observed}, limit {c.limit}"
                 + (f" ({c.detail})" if c.detail else "")
                 for c in self.failed_checks]
        lines += [f"regression: {r.text()}" for r in self.regressions]
        if self.error:
            lines.append(self.error)
        elif self.verdict != "pass" and not lines:
            lines.append(f"run verdict {self.verdict}")
        return lines


@dataclass(frozen=True)
class GateReport:
    cases: tuple[GateCase, ...]

    def count(self, status: str) -> int:
        return sum(1 for c in self.cases if c.status == status)

    @property
    def exit_code(self) -> int:
        """1 when anything failed; else 3 when a run could not start; else 0."""
        if self.count("fail"):
            return 1
        return 3 if self.count("error") else 0


# -- scenarios and baselines ---------------------------------------------------------------

def read_scenario_info(path: Path) -> ScenarioInfo:
    """Name and whether it fires bursts; full validation is the runner's job."""
    if not path.is_file():
        raise UsageError(f"scenario not found: {path}")
    data = read_yaml(path)  # the limits of every scenario file; a mapping or ScenarioError
    raw = data.get("name")
    name = raw if isinstance(raw, str) else path.stem
    return ScenarioInfo(path, name, data.get("bursts") is not None)


def load_baseline(path: Path) -> Baseline:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise UsageError(f"baseline not found: {path} (create it with --update-baseline)") \
            from exc
    except json.JSONDecodeError as exc:
        raise UsageError(f"baseline {path} is not JSON: {exc.msg} at line {exc.lineno}") \
            from exc
    if not isinstance(data, dict) or data.get("schema_version") != BASELINE_SCHEMA:
        raise UsageError(f"baseline {path}: expected schema_version {BASELINE_SCHEMA}")
    tolerance, scenarios = data.get("tolerance"), data.get("scenarios")
    if not isinstance(tolerance, int | float) or tolerance < 0:
        raise UsageError(f"baseline {path}: tolerance must be a number >= 0")
    if not isinstance(scenarios, dict) or not all(
        isinstance(v, dict) and all(isinstance(x, int | float) for x in v.values())
        for v in scenarios.values()
    ):
        raise UsageError(f"baseline {path}: scenarios must map names to {{counter: peak}}")
    return Baseline(float(tolerance), scenarios)


def baseline_from(cases: Sequence[GateCase], tolerance: float) -> Baseline:
    """The highest peak seen per counter over the runs of each scenario."""
    peaks: dict[str, dict[str, float]] = {}
    for case in cases:
        into = peaks.setdefault(case.scenario, {})
        for counter, peak in case.peaks.items():
            into[counter] = max(peak, into.get(counter, peak))
    return Baseline(tolerance, {k: v for k, v in peaks.items() if v})


def write_baseline(path: Path, baseline: Baseline) -> None:
    write_json_atomic(path, {"schema_version": BASELINE_SCHEMA,
                             "tolerance": baseline.tolerance,
                             "scenarios": {k: dict(v) for k, v in baseline.peaks.items()}},
                      sort_keys=True)


def regressions(peaks: Mapping[str, float], expected: Mapping[str, float],
                tolerance: float) -> list[Regression]:
    found = []
    for counter, base in sorted(expected.items()):
        if counter not in peaks:
            continue
        limit = base * (1 + tolerance) if base >= 0 else base * (1 - tolerance)
        if peaks[counter] > limit:
            found.append(Regression(counter, base, peaks[counter], round(limit, 6)))
    return found




# -- running -------------------------------------------------------------------------------

def judge(info: ScenarioInfo, run: int, outcome: RunOutcome, seconds: float,
          baseline: Baseline | None) -> GateCase:
    peaks = outcome.summary.peaks()
    failed = tuple(outcome.summary.failed_checks)
    found: list[Regression] = []
    if baseline is not None and info.name in baseline.peaks:
        found = regressions(peaks, baseline.peaks[info.name], baseline.tolerance)
    return GateCase(info.name, run, outcome.verdict, round(seconds, 3), outcome.folder,
                    failed, tuple(found), peaks)


def run_gate(
    scenarios: Sequence[Path],
    run: RunFn,
    *,
    repeat: int = 1,
    baseline: Baseline | None = None,
    template: RunRequest | None = None,
    clock: Clock | None = None,
    on_case: Callable[[GateCase], None] = lambda case: None,
    dispatch: Dispatch = SERIAL,
) -> GateReport:
    """Run every scenario (statistical ones `repeat` times) and judge each run; with
    `dispatch` of several jobs the runs go at once, the report keeps the serial order."""
    if repeat < 1:
        raise UsageError(f"--repeat must be at least 1, got {repeat}")
    template = template or RunRequest(scenario_path=Path())
    infos = [read_scenario_info(path) for path in scenarios]  # bad input before any run
    planned = [(info, index) for info in infos
               for index in range(1, (repeat if info.statistical else 1) + 1)]
    requests = [replace(template, scenario_path=info.path, out=None) for info, _ in planned]
    cases: dict[int, GateCase] = {}
    with open_pool(dispatch, clock) as pool:
        for done in pool.each(run, requests):
            info, index = planned[done.index]
            if isinstance(done.error, InfraError):
                case = GateCase(info.name, index, "error", done.seconds,
                                error=f"infrastructure error: {done.error}")
            else:
                case = judge(info, index, done.result(), done.seconds, baseline)
            on_case(case)
            cases[done.index] = case
    return GateReport(tuple(cases[i] for i in range(len(planned))))


@dataclass(frozen=True)
class GateFiles:
    """What a gate reads and writes beside its runs."""

    baseline: Path | None = None
    update_baseline: bool = False  # write this gate's peaks into `baseline` instead
    tolerance: float = 0.10  # stored by update_baseline
    junit: Path | None = None
    markdown: Path | None = None  # appended to, as CI step summaries are


def gate_with_files(
    scenarios: Sequence[Path],
    run: RunFn,
    files: GateFiles,
    *,
    repeat: int = 1,
    template: RunRequest | None = None,
    on_case: Callable[[GateCase], None] = lambda case: None,
    dispatch: Dispatch = SERIAL,
) -> tuple[GateReport, str]:
    """`rig gate`: the baseline read (or written), the runs, the JUnit and markdown files;
    returns the report and its markdown summary."""
    if files.update_baseline and files.baseline is None:
        raise UsageError("--update-baseline needs --baseline FILE")
    baseline = None
    if files.baseline is not None and not files.update_baseline:
        baseline = load_baseline(files.baseline)
    report = run_gate(scenarios, run, repeat=repeat, baseline=baseline, template=template,
                      on_case=on_case, dispatch=dispatch)
    markdown = markdown_summary(report)
    if files.junit is not None:
        write_text_atomic(files.junit, junit_xml(report))
    if files.markdown is not None:
        with files.markdown.open("a") as out:
            out.write(markdown)
    if files.update_baseline and files.baseline is not None:
        write_baseline(files.baseline, baseline_from(report.cases, files.tolerance))
    return report, markdown


# -- renderings ----------------------------------------------------------------------------

def junit_xml(report: GateReport, suite: str = "rig gate") -> str:
    """JUnit XML: one testcase per run, failure/error text naming the failing checks."""
    total = sum(c.seconds for c in report.cases)
    root = ET.Element("testsuites", name=suite, tests=str(len(report.cases)),
                      failures=str(report.count("fail")), errors=str(report.count("error")),
                      time=f"{total:.3f}")
    node = ET.SubElement(root, "testsuite", name=suite, tests=str(len(report.cases)),
                         failures=str(report.count("fail")), errors=str(report.count("error")),
                         skipped="0", time=f"{total:.3f}")
    for case in report.cases:
        item = ET.SubElement(node, "testcase", classname=f"rig.{case.scenario}",
                             name=case.name, time=f"{case.seconds:.3f}")
        lines = case.failure_lines()
        if case.status != "pass":
            tag = "error" if case.status == "error" else "failure"
            bad = ET.SubElement(item, tag, message=lines[0] if lines else case.status,
                                type=case.status)
            bad.text = "\n".join(lines)
        if case.folder is not None:
            ET.SubElement(item, "system-out").text = f"run folder: {case.folder}"
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def markdown_summary(report: GateReport) -> str:
    """A few lines a CI job can post on a merge request."""
    status = {0: "passed", 1: "FAILED", 3: "could not run"}[report.exit_code]
    lines = [f"### rig gate {status}: {report.count('pass')} passed, "
             f"{report.count('fail')} failed, {report.count('error')} errors", "",
             "| run | result | detail |", "|---|---|---|"]
    for case in report.cases:
        detail = "; ".join(case.failure_lines()).replace("|", "\\|") or "-"
        lines.append(f"| {case.name} | {case.status} | {detail} |")
    return "\n".join(lines) + "\n"
