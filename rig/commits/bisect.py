"""`rig bisect`: the I/O side of the flaky-aware bisect (the search itself is bisect_core).

Loop: ask the search for a step, check the commit out in a throwaway worktree, run the
scenario up to `runs` times there, tell the search each verdict (fail = failed; a commit
whose services do not build or start is skipped). Every run is appended to `bisect.json`
as it ends, so an interrupted bisect resumes where it stopped: the search is rebuilt by
replaying that log, which keeps the log and the search state from ever disagreeing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from rig.atomic import savefig_atomic, write_json_atomic
from rig.clock import SystemClock
from rig.commits.worktree import Commit, checkout, first_parent_range, repo_root
from rig.distribute import SERIAL, Dispatch, Done, Pool, open_pool, timed
from rig.errors import InfraError, ScenarioError, UsageError, quote
from rig.runner import RunOutcome, RunRequest

STATE_SCHEMA = 1
RunFn = Callable[[RunRequest], RunOutcome]
CheckoutFn = Callable[[Path, str], AbstractContextManager[Path]]


class Step(Protocol):
    @property
    def index(self) -> int: ...

    @property
    def runs(self) -> int: ...


class Search(Protocol):
    """What the driver needs of rig.commits.bisect_core.BisectSearch."""

    def observe(self, index: int, failed: bool) -> None: ...
    def skip(self, index: int) -> None: ...
    def next_step(self) -> Step | None: ...
    def posterior(self) -> Any: ...
    def best(self) -> tuple[int, float]: ...
    def best_range(self) -> tuple[int, int, float]: ...
    def to_json(self) -> Any: ...

    @property
    def done(self) -> bool: ...

    @property
    def reason(self) -> str | None: ...


SearchFactory = Callable[[int, float, "int | None"], Search]


def core_search(n: int, confidence: float, max_runs: int | None) -> Search:
    from rig.commits.bisect_core import BisectSearch

    return BisectSearch(n, confidence=confidence, max_runs=max_runs)


@dataclass(frozen=True)
class BisectArgs:
    """What identifies a bisect: resuming needs the same values."""

    repo: Path
    good: str
    bad: str
    scenario: Path
    confidence: float = 0.99
    max_runs: int | None = None
    runs_per_step: int | None = None
    overrides: tuple[str, ...] = ()
    patches: tuple[Path, ...] = ()
    target: str | None = None  # None: the scenario's
    allow_outside_sources: bool = False

    def identity(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(repo=str(self.repo), scenario=str(self.scenario),
                    overrides=list(self.overrides), patches=[str(p) for p in self.patches])
        if self.target is None:
            del data["target"]  # bisects saved before --target resume unchanged
        if not self.allow_outside_sources:
            del data["allow_outside_sources"]  # nor those saved before it
        return data


@dataclass(frozen=True)
class RunEntry:
    index: int
    commit: str
    verdict: str  # pass | fail | skip (could not build or start) | error (ignored)
    folder: str | None
    detail: str = ""


@dataclass
class BisectState:
    args: dict[str, Any]
    commits: list[Commit]
    runs: list[RunEntry] = field(default_factory=list)

    def counted(self) -> int:
        return sum(1 for r in self.runs if r.verdict in ("pass", "fail"))


@dataclass(frozen=True)
class BisectResult:
    commits: tuple[Commit, ...]
    best: int
    probability: float
    runs: int
    reason: str | None
    posterior: tuple[float, ...]
    skipped: tuple[int, ...]
    counts: tuple[tuple[int, int], ...] = ()  # (failed runs, runs) per commit
    # (lo, hi, probability): commits no run can tell apart (skipped ones before a probed one)
    best_range: tuple[int, int, float] | None = None

    @property
    def culprit(self) -> Commit:
        return self.commits[self.best]


def settle_args(args: BisectArgs) -> BisectArgs:
    """Absolute paths and full shas, so a resumed bisect is recognised from any cwd."""
    repo = repo_root(args.repo)
    if not args.scenario.is_file():
        raise UsageError(f"scenario not found: {args.scenario}")
    if not 0 < args.confidence < 1:
        raise UsageError(f"--confidence must be in (0, 1), got {args.confidence}")
    for name, value in (("--max-runs", args.max_runs), ("--runs-per-step", args.runs_per_step)):
        if value is not None and value < 1:
            raise UsageError(f"{name} must be at least 1, got {value}")
    return replace(args, repo=repo, scenario=args.scenario.resolve(),
                   patches=tuple(p.resolve() for p in args.patches))


# -- the state file ------------------------------------------------------------------------

def state_to_json(state: BisectState, search: Search) -> dict[str, Any]:
    return {
        "schema_version": STATE_SCHEMA,
        "args": state.args,
        "commits": [asdict(c) for c in state.commits],
        "runs": [asdict(r) for r in state.runs],
        "search": search.to_json(),
    }


def read_state(path: Path, args: dict[str, Any]) -> BisectState | None:
    """The saved bisect with these args, None when there is none; other args are an error."""
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        saved_args = data["args"]
        commits = [Commit(c["sha"], c["subject"]) for c in data["commits"]]
        runs = [RunEntry(**r) for r in data["runs"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{path} is not a bisect state file ({exc}); move it away") from exc
    if data.get("schema_version") != STATE_SCHEMA:
        raise UsageError(f"{path}: schema_version {quote(data.get('schema_version'))} "
                         f"is not {STATE_SCHEMA}")
    if saved_args != args:
        changed = sorted(k for k in args if saved_args.get(k) != args[k])
        raise UsageError(f"{path} belongs to another bisect (differs in {', '.join(changed)}); "
                         "use another --out or delete it")
    return BisectState(saved_args, commits, runs)


def replay(search: Search, runs: Sequence[RunEntry]) -> None:
    for entry in runs:
        if entry.verdict == "skip":
            search.skip(entry.index)
        elif entry.verdict in ("pass", "fail"):
            search.observe(entry.index, entry.verdict == "fail")


# -- one run -------------------------------------------------------------------------------

def step_request(args: BisectArgs, tree: Path, results: Path) -> RunRequest:
    return RunRequest(scenario_path=args.scenario, overrides=args.overrides,
                      patches=args.patches, results_root=results, repo=tree, progress=False,
                      target=args.target, allow_outside_sources=args.allow_outside_sources)


def run_at(run: RunFn, args: BisectArgs, tree: Path, results: Path) -> tuple[str, str | None,
                                                                              str]:
    """One run at a checkout, judged as verdict_of judges it."""
    return verdict_of(timed(run, 0, step_request(args, tree, results), SystemClock()))


def verdict_of(done: Done) -> tuple[str, str | None, str]:
    """(verdict, run folder, detail): pass/fail as judged, skip when the commit cannot run."""
    if isinstance(done.error, ScenarioError):
        raise done.error  # the user's scenario file is wrong at every commit: stop, exit 2
    if isinstance(done.error, InfraError | UsageError):
        return "skip", None, f"{type(done.error).__name__}: {done.error}"
    outcome: RunOutcome = done.result()
    verdict = outcome.verdict if outcome.verdict in ("pass", "fail") else "skip"
    return verdict, str(outcome.folder), "" if verdict != "skip" else f"verdict {outcome.verdict}"


def was_hiccup(runs: Sequence[RunEntry], index: int) -> bool:
    """A commit that ran before failing to start is a passing hiccup, not an unbuildable
    commit: the run is ignored, once; a second failure in a row skips the commit."""
    here = [r.verdict for r in runs if r.index == index]
    return bool(here) and here[-1] in ("pass", "fail")


@dataclass(frozen=True)
class StepRunner:
    """Runs at one checkout: `width` at once in `pool` (one at a time without --parallel)."""

    pool: Pool
    width: int
    run: RunFn
    args: BisectArgs
    out: Path


def run_step(runner: StepRunner, state: BisectState, search: Search, step: Step, tree: Path,
             tick: Callable[[], None]) -> None:
    """Up to step.runs runs at one commit (at least `runner.width` without --runs-per-step),
    `runner.width` at a time; a failure, a skip or the end of the search ends it after that
    batch (an ignored start hiccup does not).
    The runs of a batch are logged in the order they were asked for."""
    # K runs at once cost about the time of one: a step asked for fewer still gets K
    args, left = runner.args, runner.args.runs_per_step or max(step.runs, runner.width)
    while left > 0:
        budget = left if args.max_runs is None else args.max_runs - state.counted()
        batch = min(runner.width, left, budget)
        if batch <= 0:
            return
        request = step_request(args, tree, runner.out / "runs")
        ended = {done.index: done for done in runner.pool.each(runner.run, [request] * batch)}
        stop = False
        for index in range(batch):
            stop = record_run(state, search, step, verdict_of(ended[index]), runner.out) or stop
            tick()
        left -= batch
        if stop:
            return


def record_run(state: BisectState, search: Search, step: Step,
               judged: tuple[str, str | None, str], out: Path) -> bool:
    """Log one run and tell the search; True when the step should end here."""
    verdict, folder, detail = judged
    if verdict == "skip" and was_hiccup(state.runs, step.index):
        verdict = "error"
    state.runs.append(RunEntry(step.index, state.commits[step.index].sha, verdict, folder,
                               detail))
    replay(search, state.runs[-1:])
    write_json_atomic(out / "bisect.json", state_to_json(state, search), sort_keys=True)
    return verdict in ("fail", "skip") or search.done


def steps(search: Search) -> Iterator[Step]:
    while not search.done:
        step = search.next_step()
        if step is None:
            return
        yield step


def bisect(
    args: BisectArgs,
    out: Path,
    run: RunFn,
    *,
    make_search: SearchFactory = core_search,
    checkout_at: CheckoutFn = checkout,
    progress: bool = False,
    dispatch: Dispatch = SERIAL,
) -> BisectResult:
    """Find the first bad commit between args.good and args.bad; resumable from out.
    With `dispatch` of K jobs (`--parallel K`), K runs of one checkout go at once."""
    args = settle_args(args)
    commits = first_parent_range(args.repo, args.good, args.bad)
    identity = {**args.identity(), "good": commits[0].sha, "bad": commits[-1].sha}
    out.mkdir(parents=True, exist_ok=True)
    state = read_state(out / "bisect.json", identity) or BisectState(identity, commits)
    search = make_search(len(state.commits), args.confidence, args.max_runs)
    replay(search, state.runs)
    bar = progress_bar(progress, args.max_runs, state.counted())
    try:
        with open_pool(dispatch) as pool:
            runner = StepRunner(pool, dispatch.jobs or 1, run, args, out)
            for step in steps(search):
                if args.max_runs is not None and state.counted() >= args.max_runs:
                    break
                with checkout_at(args.repo, state.commits[step.index].sha) as tree:
                    run_step(runner, state, search, step, tree,
                             lambda: tick(bar, state, search))
    finally:
        if bar is not None:
            bar.close()
    write_json_atomic(out / "bisect.json", state_to_json(state, search), sort_keys=True)
    return result_of(state, search)


def progress_bar(enabled: bool, total: int | None, done: int) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=done, unit="run", desc="bisect", leave=False)


def tick(bar: Any, state: BisectState, search: Search) -> None:
    if bar is None:
        return
    index, prob = search.best()
    bar.n = state.counted()
    bar.set_postfix_str(f"best {state.commits[index].short} p={prob:.3f}")


def result_of(state: BisectState, search: Search) -> BisectResult:
    index, prob = search.best()
    skipped = sorted({r.index for r in state.runs if r.verdict == "skip"})
    counts = [[0, 0] for _ in state.commits]
    for entry in state.runs:
        if entry.verdict in ("pass", "fail"):
            counts[entry.index][0] += entry.verdict == "fail"
            counts[entry.index][1] += 1
    return BisectResult(tuple(state.commits), index, prob, state.counted(), search.reason,
                        tuple(float(x) for x in search.posterior()), tuple(skipped),
                        tuple((f, r) for f, r in counts), search.best_range())


# -- what the user sees --------------------------------------------------------------------

def report_lines(result: BisectResult, confidence: float) -> list[str]:
    commit = result.culprit
    found = f"{commit.sha} {commit.subject}"
    lines = []
    if result.reason == "confident":
        lines.append(f"first bad commit: {found}")
    elif result.reason == "budget":
        lines.append(f"run budget spent before reaching {confidence:g} confidence; "
                     f"best guess: {found}")
    else:
        lines.append(f"no commit left to test before reaching {confidence:g} confidence; "
                     f"best guess: {found}")
    lines.append(f"probability {result.probability:.4f} after {result.runs} scenario runs "
                 f"over {len(result.commits)} commits")
    if result.best_range is not None and result.best_range[0] < result.best_range[1]:
        lo, hi, prob = result.best_range
        lines.append(f"the first bad commit is one of {result.commits[lo].short}.."
                     f"{result.commits[hi].short} with probability {prob:.4f} (skipped commits "
                     "cannot be told apart from the next tested one)")
    if result.skipped:
        names = ", ".join(result.commits[i].short for i in result.skipped)
        lines.append(f"skipped (would not build or start): {names}")
    return lines


def plot_posterior(result: BisectResult, path: Path, confidence: float) -> Path:
    """Bar chart of P(first bad = commit), the best guess highlighted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(result.commits)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * n + 2), 3.8))
    colors = ["tab:red" if i == result.best else
              "lightgray" if i in result.skipped else "tab:blue" for i in range(n)]
    ax.bar(range(n), result.posterior, color=colors)
    for i, (failed, runs) in enumerate(result.counts):
        if runs:
            ax.text(i, 1.07, f"{failed}/{runs}", ha="center", fontsize=6, color="dimgray")
    ax.axhline(confidence, color="black", linestyle="--", linewidth=0.8,
               label=f"confidence {confidence:g}")
    ax.set_xticks(range(n), [c.sha[:7] for c in result.commits], rotation=70, fontsize=7)
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("P(first bad commit)")
    ax.set_xlabel("commit (failed/runs above each bar)")
    ax.set_title(f"bisect: {result.culprit.sha[:10]} p={result.probability:.3f}, "
                 f"{result.runs} runs")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    savefig_atomic(fig, path, dpi=100)
    plt.close(fig)
    return path


# -- `git bisect run` ----------------------------------------------------------------------

GIT_GOOD, GIT_BAD, GIT_SKIP = 0, 1, 125


def bisect_step_code(run: RunFn, request: RunRequest) -> tuple[int, str]:
    """Exit code for `git bisect run` (0 good, 1 bad, 125 skip) and a line saying why."""
    try:
        outcome = run(request)
    except (InfraError, UsageError) as exc:
        return GIT_SKIP, f"skip: {type(exc).__name__}: {exc}"
    if outcome.verdict == "pass":
        return GIT_GOOD, f"good: {outcome.folder}"
    if outcome.verdict == "fail":
        return GIT_BAD, f"bad: {outcome.folder}"
    return GIT_SKIP, f"skip: run verdict {outcome.verdict} ({outcome.folder})"
