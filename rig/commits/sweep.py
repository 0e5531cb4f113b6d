"""`rig sweep`: one counter's peak across a range of commits, with its ceiling.

Where bisect asks "which commit broke it", a sweep shows how a counter moved over history:
it runs the scenario once at every k-th commit of A..B (the last one always included) and
plots the peak of the counter per commit against the ceiling its check enforces.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, ExitStack
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from rig.atomic import savefig_atomic, write_json_atomic
from rig.commits.worktree import Commit, checkout, commit_range, repo_root
from rig.distribute import SERIAL, Dispatch, Done, Pool, open_pool
from rig.errors import InfraError, ScenarioError, UsageError
from rig.runner import RunOutcome, RunRequest
from rig.summary import Summary

SWEEP_SCHEMA = 1
RunFn = Callable[[RunRequest], RunOutcome]
CheckoutFn = Callable[[Path, str], AbstractContextManager[Path]]


@dataclass(frozen=True)
class SweepPoint:
    commit: str
    subject: str
    verdict: str  # pass | fail | skip (would not build or start)
    peak: float | None
    folder: str | None
    detail: str = ""


@dataclass(frozen=True)
class SweepResult:
    counter: str
    ceiling: float | None
    points: tuple[SweepPoint, ...]


def every_kth(commits: Sequence[Commit], k: int) -> list[Commit]:
    """Commits 0, k, 2k, ... of the range, and always the last one."""
    if k < 1:
        raise UsageError(f"--every must be at least 1, got {k}")
    picked = list(commits[::k])
    if picked[-1] != commits[-1]:
        picked.append(commits[-1])
    return picked


def ceiling_from(summary: Summary, counter: str) -> float | None:
    """The ceiling a run's check enforces on `counter`, when --ceiling is not given."""
    from rig.report import ceiling_of

    return ceiling_of(summary, counter)


def sweep_point(done: Done, commit: Commit, counter: str) -> tuple[SweepPoint, float | None]:
    """The point of one commit's run, and the ceiling it reports (if any)."""
    if isinstance(done.error, ScenarioError):
        raise done.error
    if isinstance(done.error, InfraError | UsageError):
        return SweepPoint(commit.sha, commit.subject, "skip", None, None, str(done.error)), None
    outcome: RunOutcome = done.result()
    peak = outcome.summary.peaks().get(counter)
    detail = "" if peak is not None else f"no counter {counter} in the run"
    point = SweepPoint(commit.sha, commit.subject, outcome.verdict, peak, str(outcome.folder),
                       detail)
    return point, ceiling_from(outcome.summary, counter)


def sweep(
    repo: Path,
    span: str,
    scenario: Path,
    out: Path,
    run: RunFn,
    *,
    every: int = 1,
    counter: str = "kmod.pins",
    ceiling: float | None = None,
    overrides: tuple[str, ...] = (),
    patches: tuple[Path, ...] = (),
    target: str | None = None,
    allow_outside_sources: bool = False,
    checkout_at: CheckoutFn = checkout,
    on_point: Callable[[SweepPoint], None] = lambda point: None,
    dispatch: Dispatch = SERIAL,
) -> SweepResult:
    """Run the scenario at every k-th commit of span; writes sweep.json and sweep.png.

    With `dispatch` of N jobs, N commits are checked out and run at once (the next N once
    all of them ended); sweep.json keeps the commits' order."""
    repo = repo_root(repo)
    if not scenario.is_file():
        raise UsageError(f"scenario not found: {scenario}")
    commits = every_kth(commit_range(repo, span), every)
    out.mkdir(parents=True, exist_ok=True)
    points: list[SweepPoint] = []
    seen_ceiling = ceiling
    width = dispatch.width or len(commits)
    with open_pool(dispatch) as pool:
        for start in range(0, len(commits), width):
            batch = commits[start:start + width]
            for point, reported in run_batch(pool, run, batch, checkout_at, repo, counter,
                                             RunRequest(
                                                 scenario_path=scenario.resolve(),
                                                 overrides=overrides, patches=patches,
                                                 results_root=out / "runs", progress=False,
                                                 target=target,
                                                 allow_outside_sources=allow_outside_sources)):
                seen_ceiling = seen_ceiling if seen_ceiling is not None else reported
                points.append(point)
                on_point(point)
                result = SweepResult(counter, seen_ceiling, tuple(points))
                write_json_atomic(out / "sweep.json", sweep_json(result, repo, span, scenario),
                                  sort_keys=True)
    result = SweepResult(counter, seen_ceiling, tuple(points))
    plot_sweep(result, out / "sweep.png")
    return result


def run_batch(pool: Pool, run: RunFn, batch: Sequence[Commit], checkout_at: CheckoutFn,
              repo: Path, counter: str,
              template: RunRequest) -> list[tuple[SweepPoint, float | None]]:
    """The points of a few commits, each run in a checkout of its own, in the batch's order."""
    with ExitStack() as trees:
        requests = [replace(template, repo=trees.enter_context(checkout_at(repo, commit.sha)))
                    for commit in batch]
        ended = {done.index: done for done in pool.each(run, requests)}
        return [sweep_point(ended[i], commit, counter) for i, commit in enumerate(batch)]


def sweep_json(result: SweepResult, repo: Path, span: str, scenario: Path) -> dict[str, Any]:
    return {"schema_version": SWEEP_SCHEMA, "repo": str(repo), "range": span,
            "scenario": str(scenario), "counter": result.counter, "ceiling": result.ceiling,
            "points": [asdict(p) for p in result.points]}


def plot_sweep(result: SweepResult, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = range(len(result.points))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.4 * len(result.points) + 2), 3.8))
    ran = [(x, p.peak, p.verdict) for x, p in zip(xs, result.points, strict=True)
           if p.peak is not None]
    ax.plot([x for x, _, _ in ran], [peak for _, peak, _ in ran], marker="o",
            color="tab:blue", label=f"peak {result.counter}")
    failed = [(x, peak) for x, peak, verdict in ran if verdict == "fail"]
    ax.scatter([x for x, _ in failed], [peak for _, peak in failed], color="tab:red",
               zorder=3, label="run failed")
    for x, p in zip(xs, result.points, strict=True):
        if p.verdict == "skip":
            ax.axvline(x, color="lightgray", linestyle=":", linewidth=1)
    if result.ceiling is not None:
        ax.axhline(result.ceiling, color="black", linestyle="--", linewidth=0.8,
                   label=f"ceiling {result.ceiling:g}")
    ax.set_xticks(list(xs), [p.commit[:7] for p in result.points], rotation=70, fontsize=7)
    ax.set_ylabel(result.counter)
    ax.set_title(f"sweep: peak {result.counter} per commit")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    savefig_atomic(fig, path, dpi=100)
    plt.close(fig)
    return path
