import json
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from rig.commits.bisect import (
    GIT_BAD,
    GIT_GOOD,
    GIT_SKIP,
    BisectArgs,
    bisect,
    bisect_step_code,
    plot_posterior,
    report_lines,
)
from rig.commits.bisect_core import BisectSearch
from rig.errors import InfraError, ScenarioError, UsageError
from rig.runner import RunOutcome, RunRequest

from .conftest import FakeRun, Repo, make_repo, summary, worktrees

N = 16


@dataclass
class FlakyOracle:
    """Fails with probability p at and after the culprit; the outcome of the k-th call is
    fixed by (seed, k), so an interrupted and resumed bisect sees the same sequence."""

    culprit: int
    p: float
    seed: int = 1
    calls: int = 0
    broken: frozenset[int] = frozenset()
    interrupt_at: int | None = None

    def __call__(self, request: RunRequest) -> dict:
        index = int((request.repo / "v.txt").read_text())
        self.calls += 1
        if self.interrupt_at is not None and self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        if index in self.broken:
            raise InfraError(f"relay of commit {index} would not build")
        failed = index >= self.culprit and random.Random(f"{self.seed}-{self.calls}").random() \
            < self.p
        return summary("fail" if failed else "pass")


@pytest.fixture
def history(tmp_path: Path) -> Repo:
    return make_repo(tmp_path / "repo", [{"v.txt": f"{i}\n"} for i in range(N)])


def args_for(history: Repo, scenario: Path, **kw) -> BisectArgs:
    return BisectArgs(history.root, history.shas[0], history.shas[-1], scenario, **kw)


@pytest.mark.parametrize(("culprit", "p", "seed"), [(1, 0.5, 1), (9, 0.3, 2), (15, 0.7, 3)])
def test_finds_a_flaky_culprit(history, scenario, tmp_path, culprit, p, seed):
    oracle = FlakyOracle(culprit, p, seed)
    result = bisect(args_for(history, scenario), tmp_path / "out", FakeRun(oracle))
    assert result.reason == "confident"
    assert result.best == culprit
    assert result.culprit.sha == history.shas[culprit]
    assert result.probability >= 0.99
    assert result.runs == oracle.calls == sum(runs for _, runs in result.counts)
    assert all(failed == 0 for failed, _ in result.counts[:culprit])
    assert len(worktrees(history.root)) == 1


def test_every_run_is_in_bisect_json(history, scenario, tmp_path):
    oracle = FlakyOracle(6, 0.6)
    out = tmp_path / "out"
    run = FakeRun(oracle)
    bisect(args_for(history, scenario), out, run)
    state = json.loads((out / "bisect.json").read_text())
    assert len(state["runs"]) == len(run.requests)
    assert {r["commit"] for r in state["runs"]} <= set(history.shas)
    assert all(r["folder"].startswith(str(out / "runs")) for r in state["runs"])
    assert [c["sha"] for c in state["commits"]] == list(history.shas)
    assert sum(state["search"]["runs"]) == len(run.requests)


def test_a_commit_that_does_not_build_is_skipped(history, scenario, tmp_path):
    first = BisectSearch(N).next_step()
    assert first is not None
    broken = first.index  # the commit the search probes first
    oracle = FlakyOracle(12, 0.6, broken=frozenset({broken}))
    result = bisect(args_for(history, scenario), tmp_path / "out", FakeRun(oracle))
    assert result.skipped == (broken,)
    assert result.best == 12
    state = json.loads((tmp_path / "out" / "bisect.json").read_text())
    at_broken = [r for r in state["runs"] if r["index"] == broken]
    assert [r["verdict"] for r in at_broken] == ["skip"]
    assert "would not build" in at_broken[0]["detail"]


def test_resumes_after_an_interruption(history, scenario, tmp_path):
    straight = tmp_path / "straight"
    bisect(args_for(history, scenario), straight, FakeRun(FlakyOracle(7, 0.4, seed=5)))

    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        bisect(args_for(history, scenario), out, FakeRun(FlakyOracle(7, 0.4, seed=5,
                                                                      interrupt_at=6)))
    assert len(worktrees(history.root)) == 1
    saved = json.loads((out / "bisect.json").read_text())["runs"]
    assert len(saved) == 5
    again = FlakyOracle(7, 0.4, seed=5, calls=len(saved))
    result = bisect(args_for(history, scenario), out, FakeRun(again))
    assert result.best == 7
    assert _runs(out) == _runs(straight)


def test_resuming_with_other_arguments_is_refused(history, scenario, tmp_path):
    out = tmp_path / "out"
    bisect(args_for(history, scenario), out, FakeRun(FlakyOracle(3, 0.9)))
    with pytest.raises(UsageError, match="belongs to another bisect .*confidence"):
        bisect(args_for(history, scenario, confidence=0.9), out, FakeRun(FlakyOracle(3, 0.9)))


def test_the_budget_ends_the_search_with_a_best_guess(history, scenario, tmp_path):
    oracle = FlakyOracle(8, 0.1)
    result = bisect(args_for(history, scenario, max_runs=6), tmp_path / "out", FakeRun(oracle))
    assert result.reason == "budget"
    assert result.runs == oracle.calls == 6
    first = report_lines(result, 0.99)[0]
    assert first.startswith("run budget spent before reaching 0.99 confidence; best guess: ")
    assert history.shas[result.best] in first


def test_runs_per_step_sets_the_runs_at_one_checkout(history, scenario, tmp_path):
    run = FakeRun(FlakyOracle(5, 0.5))
    bisect(args_for(history, scenario, runs_per_step=2), tmp_path / "out", run)
    per_checkout = Counter(request.repo for request in run.requests)
    assert max(per_checkout.values()) == 2
    verdicts = {request.repo: [] for request in run.requests}
    for request, entry in zip(run.requests, _runs(tmp_path / "out"), strict=True):
        verdicts[request.repo].append(entry[1])
    # a checkout ends early only at a failure (or when the search is done)
    early = [v for v in verdicts.values() if len(v) == 1]
    assert all(v == ["fail"] for v in early[:-1])


def _runs(folder: Path) -> list[tuple[int, str]]:
    state = json.loads((folder / "bisect.json").read_text())
    return [(r["index"], r["verdict"]) for r in state["runs"]]


def test_a_bad_scenario_stops_the_bisect(history, scenario, tmp_path):
    def invalid(request):
        raise ScenarioError(f"{request.scenario_path}: load.cps: must be >= 0")

    with pytest.raises(ScenarioError, match="load.cps"):
        bisect(args_for(history, scenario), tmp_path / "out", FakeRun(invalid))
    assert len(worktrees(history.root)) == 1


@pytest.mark.parametrize(
    ("kw", "message"),
    [({"confidence": 1.0}, "--confidence"), ({"max_runs": 0}, "--max-runs"),
     ({"runs_per_step": 0}, "--runs-per-step")],
)
def test_bad_arguments_are_usage_errors(history, scenario, tmp_path, kw, message):
    with pytest.raises(UsageError, match=message):
        bisect(args_for(history, scenario, **kw), tmp_path / "out", FakeRun(FlakyOracle(3, 1)))


def test_report_and_plot_of_a_finished_bisect(history, scenario, tmp_path):
    result = bisect(args_for(history, scenario), tmp_path / "out",
                    FakeRun(FlakyOracle(4, 0.8)))
    lines = report_lines(result, 0.99)
    assert lines[0] == f"first bad commit: {history.shas[4]} commit 4"
    assert f"after {result.runs} scenario runs over {N} commits" in lines[1]
    png = plot_posterior(result, tmp_path / "out" / "bisect.png", 0.99)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def outcome(verdict: str) -> FakeRun:
    return FakeRun(lambda request: summary(verdict))


def raising(exc: Exception) -> FakeRun:
    def run(request: RunRequest) -> RunOutcome:
        raise exc

    return FakeRun(run)


@pytest.mark.parametrize(
    ("run", "code"),
    [
        (outcome("pass"), GIT_GOOD),
        (outcome("fail"), GIT_BAD),
        (outcome("error"), GIT_SKIP),
        (raising(InfraError("relay did not start")), GIT_SKIP),
        (raising(UsageError("patch x does not apply")), GIT_SKIP),
    ],
)
def test_bisect_step_exit_codes(run, code, scenario):
    got, why = bisect_step_code(run, RunRequest(scenario))
    assert got == code
    assert why.split(":")[0] in {"good", "bad", "skip"}


def test_a_skipped_commit_just_before_the_culprit_is_reported_as_a_range(
        history, scenario, tmp_path):
    first = BisectSearch(N).next_step()
    assert first is not None
    broken = first.index
    oracle = FlakyOracle(broken + 1, 0.8, broken=frozenset({broken}))
    result = bisect(args_for(history, scenario), tmp_path / "out", FakeRun(oracle))
    assert result.reason == "confident"
    assert result.best_range is not None and result.best_range[:2] == (broken, broken + 1)
    shorts = [c.short for c in result.commits]
    assert any(f"one of {shorts[broken]}..{shorts[broken + 1]}" in line
               for line in report_lines(result, 0.99))


def test_a_start_failure_after_good_runs_is_ignored_once_then_skipped(history, scenario,
                                                                      tmp_path):
    first = BisectSearch(N).next_step()
    assert first is not None
    flaky_start = first.index
    seen: list[int] = []

    def decide(request: RunRequest) -> dict:
        index = int((request.repo / "v.txt").read_text())
        seen.append(index)
        if index == flaky_start and seen.count(index) > 1:
            raise InfraError("port 2223 taken")
        return summary("fail" if index >= 12 else "pass")

    result = bisect(args_for(history, scenario, runs_per_step=3), tmp_path / "out",
                    FakeRun(decide))
    at = [v for i, v in _runs(tmp_path / "out") if i == flaky_start]
    assert at == ["pass", "error", "skip"]
    assert result.skipped == (flaky_start,)
    assert result.best == 12
