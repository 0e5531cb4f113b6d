"""Flaky-aware bisect on a simulated oracle, side by side with git-bayesect and repeat-k.

Every search draws a culprit uniformly in 1..n-1; a run at commit i fails with probability
p when i >= culprit and with the false-alarm probability f otherwise. The algorithms never
see p or f (repeat-k is the exception: it is told p, which is its best case). All searches
of a cell share their culprits across algorithms (common random numbers).

git-bayesect runs twice in every (p, f) cell: with its defaults (Jeffreys Beta(0.5, 0.5) on
both failure rates) and with a prior on false alarms as informed as the rig's, Beta(0.5, 90):
mean 0.55%, the mean of the rig's false-alarm grid (half its weight on none). Its prior on
p stays Jeffreys, its own choice (the rig's log-uniform grid has no Beta counterpart).

    python bench/bench_bisect.py                 # 1,000 searches per cell
    python bench/bench_bisect.py --quick         # 100 searches per cell
    python bench/bench_bisect.py --searches 2000 --jobs 2

Prints the tables and saves results/bench/bisect.json and results/bench/bisect.md.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rig.commits.bisect_core import BisectSearch  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "results" / "bench"
N_COMMITS = 64
CONFIDENCE = 0.99
RUN_CAP = 5000  # bounds every simulated search; no cell comes near it
MAIN_PS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7)
MAIN_F = 0.005
ISSUE_CELLS = ((0.3, 0.0), (0.3, 0.01), (0.1, 0.0), (0.1, 0.01))
HIGH_F_CELLS = ((0.3, 0.01), (0.5, 0.01), (0.7, 0.01))
# every (p, f) the rig is measured at, each also run by both git-bayesect variants
ALL_CELLS = tuple(dict.fromkeys([(p, MAIN_F) for p in MAIN_PS] + list(ISSUE_CELLS)
                                + list(HIGH_F_CELLS)))

Oracle = Callable[[int], bool]


@dataclass(frozen=True)
class BayesectPrior:
    """git-bayesect's Beta priors: `new` on runs at or after the culprit (p), `old` before
    it (f, the false alarms)."""

    alpha_new: float = 0.5
    beta_new: float = 0.5
    alpha_old: float = 0.5
    beta_old: float = 0.5


BAYESECT_PRIORS = {
    "git-bayesect": BayesectPrior(),  # its defaults
    "git-bayesect-informed": BayesectPrior(alpha_old=0.5, beta_old=90.0),
}


@dataclass(frozen=True)
class Outcome:
    """One simulated search: right or wrong, what it cost, what it claimed."""

    correct: bool
    runs: int
    checkouts: int
    claimed: float


@dataclass(frozen=True)
class Cell:
    """Aggregate of one algorithm on one (p, f) setting."""

    algorithm: str
    p: float
    f: float
    searches: int
    accuracy: float
    mean_runs: float
    p95_runs: float
    mean_checkouts: float
    mean_claimed: float
    seconds: float


# --- the algorithms, each on an oracle ---------------------------------------------------


def run_ours(n: int, oracle: Oracle, max_batch: int) -> tuple[int, Outcome]:
    search = BisectSearch(n, confidence=CONFIDENCE, max_runs=RUN_CAP, max_batch=max_batch)
    checkouts = 0
    while (step := search.next_step()) is not None:
        checkouts += 1
        for _ in range(step.runs):
            failed = oracle(step.index)
            search.observe(step.index, failed)
            if failed:
                break
    lo, hi, prob = search.best_range()
    return lo, Outcome(False, search.total_runs, checkouts, prob)


def run_bayesect(n: int, oracle: Oracle, beta: BayesectPrior) -> tuple[int, Outcome]:
    from git_bayesect import Bisector

    # git-bayesect indexes from the newest commit; its B is the oldest bad commit
    prior = np.ones(n)
    prior[n - 1] = 0.0  # our commit 0 is known good: same knowledge as ours
    bisector = Bisector(prior, alpha_new=beta.alpha_new, beta_new=beta.beta_new,
                        alpha_old=beta.alpha_old, beta_old=beta.beta_old)
    runs = checkouts = 0
    last = None
    with np.errstate(divide="ignore", invalid="ignore"):
        while bisector.distribution.max() < CONFIDENCE and runs < RUN_CAP:
            relative = bisector.select()
            checkouts += relative != last
            last = relative
            bisector.record(relative, oracle(n - 1 - relative))
            runs += 1
        dist = bisector.distribution
    best = int(np.argmax(dist))
    return n - 1 - best, Outcome(False, runs, checkouts, float(dist[best]))


def run_repeat_k(n: int, oracle: Oracle, k: int) -> tuple[int, Outcome]:
    """Plain bisect; a step runs up to k times and calls the commit bad at the first failure."""
    good, bad, runs, checkouts = 0, n - 1, 0, 0
    while bad - good > 1:
        mid = (good + bad) // 2
        checkouts += 1
        failed = False
        for _ in range(k):
            runs += 1
            if oracle(mid):
                failed = True
                break
        good, bad = (good, mid) if failed else (mid, bad)
    return bad, Outcome(False, runs, checkouts, float("nan"))


def repeat_k_accuracy(n: int, p: float, f: float, k: int) -> float:
    """Exact accuracy of repeat-k: every step must be judged right, or the answer is wrong."""
    total = 0.0
    for culprit in range(1, n):
        good, bad, prob = 0, n - 1, 1.0
        while bad - good > 1:
            mid = (good + bad) // 2
            if mid >= culprit:
                prob *= 1.0 - (1.0 - p) ** k
                bad = mid
            else:
                prob *= (1.0 - f) ** k
                good = mid
        total += prob
    return total / (n - 1)


def tune_k(n: int, p: float, target: float) -> int:
    """Smallest k whose exact accuracy at f = 0 reaches `target` (repeat-k is told p)."""
    k = 1
    while repeat_k_accuracy(n, p, 0.0, k) < target:
        k += 1
    return k


# --- simulation --------------------------------------------------------------------------


def oracle_for(rng: np.random.Generator, culprit: int, p: float, f: float) -> Oracle:
    def run(index: int) -> bool:
        return bool(rng.random() < (p if index >= culprit else f))

    return run


def one_search(task: tuple[str, int, float, float, int, int]) -> Outcome:
    algorithm, param, p, f, seed, i = task
    culprit = int(np.random.default_rng([seed, i]).integers(1, N_COMMITS))
    rng = np.random.default_rng([seed, i, int(p * 1000), int(f * 10000), len(algorithm), param])
    oracle = oracle_for(rng, culprit, p, f)
    if algorithm == "rig":
        answer, outcome = run_ours(N_COMMITS, oracle, max_batch=param)
    elif algorithm in BAYESECT_PRIORS:
        answer, outcome = run_bayesect(N_COMMITS, oracle, BAYESECT_PRIORS[algorithm])
    else:
        answer, outcome = run_repeat_k(N_COMMITS, oracle, k=param)
    return Outcome(answer == culprit, outcome.runs, outcome.checkouts, outcome.claimed)


def run_cell(pool: multiprocessing.pool.Pool, algorithm: str, param: int, p: float, f: float,
             searches: int, seed: int) -> Cell:
    started = time.monotonic()
    tasks = [(algorithm, param, p, f, seed, i) for i in range(searches)]
    outcomes = pool.map(one_search, tasks, chunksize=max(1, searches // 40))
    cell = summarise(algorithm, p, f, outcomes, time.monotonic() - started)
    print(f"  {cell.algorithm:>14} p={p:<4} f={f:<5} acc={cell.accuracy:.3f} "
          f"mean={cell.mean_runs:.1f} p95={cell.p95_runs:.0f} ({cell.seconds:.0f} s)",
          file=sys.stderr, flush=True)
    return cell


def summarise(algorithm: str, p: float, f: float, outcomes: Iterable[Outcome],
              seconds: float) -> Cell:
    rows = list(outcomes)
    runs = np.array([o.runs for o in rows])
    return Cell(algorithm=algorithm, p=p, f=f, searches=len(rows),
                accuracy=float(np.mean([o.correct for o in rows])),
                mean_runs=float(runs.mean()), p95_runs=float(np.percentile(runs, 95)),
                mean_checkouts=float(np.mean([o.checkouts for o in rows])),
                mean_claimed=float(np.mean([o.claimed for o in rows])), seconds=seconds)


# --- tables ------------------------------------------------------------------------------


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def main_table(ours: list[Cell], default: list[Cell], informed: list[Cell]) -> str:
    """The rig beside git-bayesect with its defaults and with the informed prior."""
    rows = []
    for a, b, c in zip(ours, default, informed, strict=True):
        rows.append([f"{a.p}", f"{a.f}", f"{a.accuracy:.1%}", f"{a.mean_claimed:.4f}",
                     f"{a.mean_runs:.1f}", f"{a.p95_runs:.0f}", f"{a.mean_checkouts:.1f}",
                     f"{b.accuracy:.1%}", f"{b.mean_runs:.1f}", f"{b.p95_runs:.0f}",
                     f"{c.accuracy:.1%}", f"{c.mean_runs:.1f}", f"{c.p95_runs:.0f}",
                     f"{a.mean_runs / b.mean_runs:.2f}", f"{a.mean_runs / c.mean_runs:.2f}"])
    return table(["p", "f", "rig acc", "rig claimed", "rig mean", "rig p95", "rig checkouts",
                  "default acc", "default mean", "default p95",
                  "informed acc", "informed mean", "informed p95",
                  "rig/default", "rig/informed"], rows)


def issue_table(ours: list[Cell], repeat: list[Cell], ks: list[int]) -> str:
    rows = []
    for a, b, k in zip(ours, repeat, ks, strict=True):
        rows.append([f"{a.p}", f"{a.f}", f"{a.accuracy:.1%}", f"{a.mean_runs:.1f}",
                     f"{a.p95_runs:.0f}", f"{k}", f"{b.accuracy:.1%}", f"{b.mean_runs:.1f}",
                     f"{b.p95_runs:.0f}", f"{a.mean_runs / b.mean_runs:.2f}"])
    return table(["p", "f", "rig acc", "rig mean", "rig p95", "k", "repeat-k acc",
                  "repeat-k mean", "repeat-k p95", "rig/repeat-k"], rows)


def simple_table(cells: list[Cell]) -> str:
    rows = [[c.algorithm, f"{c.p}", f"{c.f}", f"{c.accuracy:.1%}", f"{c.mean_runs:.1f}",
             f"{c.p95_runs:.0f}", f"{c.mean_checkouts:.1f}"] for c in cells]
    return table(["algorithm", "p", "f", "accuracy", "mean runs", "p95 runs", "checkouts"], rows)


# --- entry point -------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--searches", type=int, default=1000, help="searches per cell")
    parser.add_argument("--quick", action="store_true", help="100 searches per cell")
    parser.add_argument("--seed", type=int, default=20260514)
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--max-batch", type=int, default=4, help="rig: runs per checkout, at most")
    parser.add_argument("--no-bayesect", action="store_true", help="skip git-bayesect")
    parser.add_argument("--no-repeat-k", action="store_true",
                        help="skip repeat-k and the runs-per-checkout cells")
    args = parser.parse_args(argv)
    if args.quick:
        args.searches = 100
    if args.searches < 1 or args.jobs < 1 or args.max_batch < 1:
        parser.error("--searches, --jobs and --max-batch must be >= 1")
    return args


def bayesect_available() -> bool:
    try:
        import git_bayesect  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    use_bayesect = not args.no_bayesect and bayesect_available()
    sections: list[str] = []
    cells: list[Cell] = []
    started = time.monotonic()
    load_before = os.getloadavg()
    with multiprocessing.Pool(args.jobs) as pool:
        measured: dict[tuple[str, int, float, float], Cell] = {}

        def cell(algorithm: str, param: int, p: float, f: float) -> Cell:
            key = (algorithm, param, p, f)
            if key not in measured:  # a cell in two tables is measured once
                measured[key] = run_cell(pool, algorithm, param, p, f, args.searches, args.seed)
                cells.append(measured[key])
            return measured[key]

        ours = [cell("rig", args.max_batch, p, f) for p, f in ALL_CELLS]
        if use_bayesect:
            default = [cell("git-bayesect", 0, p, f) for p, f in ALL_CELLS]
            informed = [cell("git-bayesect-informed", 0, p, f) for p, f in ALL_CELLS]
            sections.append(
                f"### {N_COMMITS} commits, stop at {CONFIDENCE}: the rig vs git-bayesect 1.2 "
                "with its defaults (Beta(0.5, 0.5) on p and f) and informed (Beta(0.5, 90) "
                "on f)\n\n" + main_table(ours, default, informed))
        else:
            sections.append("### git-bayesect not installed (pip install git-bayesect==1.2)\n\n"
                            + simple_table(ours))
        if args.no_repeat_k:
            return finish(args, started, load_before, sections, cells)

        ks = [tune_k(N_COMMITS, p, CONFIDENCE) for p, _ in ISSUE_CELLS]
        ours_issue = [cell("rig", args.max_batch, p, f) for p, f in ISSUE_CELLS]
        repeat = [cell(f"repeat-{k}", k, p, f) for (p, f), k in zip(ISSUE_CELLS, ks, strict=True)]
        sections.append("### vs repeat-k told p (k tuned for 99% at f = 0 and the true p)\n\n"
                        + issue_table(ours_issue, repeat, ks))
        # the same accuracy without knowing p: k must cover the worst p of the range
        k_worst = tune_k(N_COMMITS, min(MAIN_PS), CONFIDENCE)
        worst = [cell(f"repeat-{k_worst}", k_worst, p, f) for p, f in ISSUE_CELLS]
        sections.append(f"### vs repeat-k not told p (k tuned for 99% at f = 0, p = "
                        f"{min(MAIN_PS)})\n\n"
                        + issue_table(ours_issue, worst, [k_worst] * len(ISSUE_CELLS)))

        high_f = [cell("rig", args.max_batch, p, f) for p, f in HIGH_F_CELLS]
        single = [cell("rig", 1, 0.3, MAIN_F), cell("rig", 8, 0.3, MAIN_F)]
        sections.append("### 1% false alarms, and the cost of runs per checkout (max_batch "
                        f"1, {args.max_batch} above, 8)\n\n" + simple_table(high_f + single))

    return finish(args, started, load_before, sections, cells)


def finish(args: argparse.Namespace, started: float, load_before: tuple[float, ...],
           sections: list[str], cells: list[Cell]) -> int:
    machine = {"cpus": os.cpu_count(), "loadavg_before": list(load_before),
               "loadavg_after": list(os.getloadavg())}
    text = (f"Bisect benchmark: {args.searches} searches per cell, seed {args.seed}, "
            f"{time.monotonic() - started:.0f} s on {args.jobs} jobs, {machine['cpus']} CPUs, "
            f"load average {load_before[0]:.1f} before, {machine['loadavg_after'][0]:.1f} after"
            "\n\n" + "\n\n".join(sections))
    print(text)
    save(text, cells, args, machine)
    return 0


def save(text: str, cells: list[Cell], args: argparse.Namespace, machine: dict) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    payload = {"schema_version": 2, "n_commits": N_COMMITS, "confidence": CONFIDENCE,
               "searches": args.searches, "seed": args.seed, "max_batch": args.max_batch,
               "bayesect_priors": {name: asdict(prior) for name, prior in BAYESECT_PRIORS.items()},
               "machine": machine, "cells": [asdict(c) for c in cells]}
    for name, content in (("bisect.json", json.dumps(payload, indent=2)), ("bisect.md", text)):
        tmp = OUT / f".{name}.tmp"
        tmp.write_text(content + "\n")
        tmp.replace(OUT / name)
    print(f"saved: {OUT / 'bisect.json'}, {OUT / 'bisect.md'}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
