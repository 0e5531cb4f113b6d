"""Subcommands across commits: gate, bisect, bisect-step, sweep, demo-history.

`add_parsers(subparsers)` adds them to the `rig` parser; `COMMANDS` maps each name to its
function. Every function takes the parsed arguments and, for tests, a run function in place
of the real runner, and returns the exit code.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from rig.options import (
    add_dispatch_options,
    add_run_options,
    dispatch_of,
    run_request,
    show_progress,
)
from rig.runner import RunOutcome, RunRequest

# bounds a bisect that cannot become confident (a failure that no longer reproduces)
DEFAULT_MAX_RUNS = 1000


def real_run(request: RunRequest) -> RunOutcome:
    from rig.runner import run_scenario

    return run_scenario(request)


def add_parsers(sub: Any) -> None:
    gate = sub.add_parser("gate", help="CI gate: run scenarios, compare with a baseline, "
                                       "write JUnit XML")
    gate.add_argument("scenarios", type=Path, nargs="+", metavar="SCENARIO")
    gate.add_argument("--baseline", type=Path, help="JSON of peak counters per scenario")
    gate.add_argument("--update-baseline", action="store_true",
                      help="write the peaks of this gate into --baseline instead of comparing")
    gate.add_argument("--tolerance", type=float, default=0.10,
                      help="relative tolerance stored by --update-baseline (default 0.10)")
    gate.add_argument("--repeat", type=int, default=1, metavar="N",
                      help="runs of each statistical scenario (one with bursts)")
    gate.add_argument("--junit", type=Path, metavar="FILE", help="JUnit XML for the CI server")
    gate.add_argument("--markdown", type=Path, metavar="FILE",
                      help="markdown summary (e.g. $GITHUB_STEP_SUMMARY)")
    gate.add_argument("--results", type=Path, default=Path("results"), metavar="DIR")
    add_run_options(gate)
    add_dispatch_options(gate, jobs_help="runs at once, --repeat runs included (default 1)")

    bisect = sub.add_parser("bisect", help="find the first bad commit, flaky failures included")
    bisect.add_argument("scenario", type=Path)
    bisect.add_argument("--good", required=True, metavar="REV")
    bisect.add_argument("--bad", required=True, metavar="REV")
    bisect.add_argument("--confidence", type=float, default=0.99)
    bisect.add_argument("--max-runs", type=int, default=DEFAULT_MAX_RUNS, metavar="N",
                        help=f"budget of scenario runs (default {DEFAULT_MAX_RUNS})")
    bisect.add_argument("--runs-per-step", type=int, metavar="K",
                        help="runs per checkout (default: the search decides)")
    bisect.add_argument("--out", type=Path, metavar="DIR",
                        help="bisect.json, bisect.png, runs/ (default results/bisect-...)")
    add_run_options(bisect, repo_required=True)
    add_dispatch_options(bisect, jobs_flag="--parallel",
                         jobs_help="runs of one checkout at once (default 1)")

    step = sub.add_parser("bisect-step", help="for `git bisect run`: 0 good, 1 bad, 125 skip")
    step.add_argument("scenario", type=Path)
    step.add_argument("--results", type=Path, default=Path("results"), metavar="DIR")
    add_run_options(step)

    sweep = sub.add_parser("sweep", help="a counter's peak at every k-th commit of A..B")
    sweep.add_argument("range", metavar="A..B")
    sweep.add_argument("scenario", type=Path)
    sweep.add_argument("--every", type=int, default=1, metavar="K")
    sweep.add_argument("--counter", default="kmod.pins")
    sweep.add_argument("--ceiling", type=float, help="default: the limit of the counter's check")
    sweep.add_argument("--out", type=Path, metavar="DIR", default=Path("results/sweep"))
    add_run_options(sweep, repo_required=True)
    add_dispatch_options(sweep, jobs_help="commits run at once (default 1)")

    demo = sub.add_parser("demo-history", help="a git history of the model SUT with a culprit")
    demo.add_argument("dir", type=Path)
    demo.add_argument("--commits", type=int, default=16)
    demo.add_argument("--culprit", type=int, required=True, metavar="K",
                      help="index of the commit that removes the fix (1..commits-1)")


def cmd_gate(args: argparse.Namespace, run: Any = real_run) -> int:
    from rig.commits.gate import GateFiles, gate_with_files

    files = GateFiles(args.baseline, args.update_baseline, args.tolerance, args.junit,
                      args.markdown)
    template = run_request(args, Path(), results_root=args.results, progress=False)
    report, markdown = gate_with_files(
        args.scenarios, run, files, repeat=args.repeat, template=template,
        on_case=lambda c: print(f"{c.status.upper():5} {c.name}", file=sys.stderr),
        dispatch=dispatch_of(args))
    if args.update_baseline:
        print(f"baseline written: {args.baseline}")
    print(markdown, end="")
    return report.exit_code


def default_bisect_out(args: argparse.Namespace) -> Path:
    from rig.commits.worktree import repo_root, resolve

    repo = repo_root(args.repo)
    good, bad = resolve(repo, args.good), resolve(repo, args.bad)
    return Path("results") / f"bisect-{args.scenario.stem}-{good[:8]}-{bad[:8]}"


def cmd_bisect(args: argparse.Namespace, run: Any = real_run) -> int:
    from rig.commits.bisect import BisectArgs, bisect, plot_posterior, report_lines

    request = BisectArgs(args.repo, args.good, args.bad, args.scenario, args.confidence,
                         args.max_runs, args.runs_per_step, tuple(args.overrides),
                         tuple(args.patches), args.target, args.allow_outside_sources)
    out = args.out or default_bisect_out(args)
    result = bisect(request, out, run, progress=show_progress(args), dispatch=dispatch_of(args))
    plot_posterior(result, out / "bisect.png", args.confidence)
    for line in report_lines(result, args.confidence):
        print(line)
    print(f"state: {out / 'bisect.json'}  plot: {out / 'bisect.png'}")
    return 0 if result.reason == "confident" else 1


def cmd_bisect_step(args: argparse.Namespace, run: Any = real_run) -> int:
    from rig.commits.bisect import bisect_step_code
    from rig.commits.worktree import repo_root
    from rig.errors import UsageError

    try:
        repo = repo_root(args.repo or Path.cwd())
    except UsageError:
        repo = args.repo or Path.cwd()  # not a git checkout: run the sources as they are
    request = run_request(args, args.scenario, results_root=args.results, repo=repo,
                          progress=False)
    code, why = bisect_step_code(run, request)
    print(f"rig bisect-step: {why}", file=sys.stderr)
    return code


def cmd_sweep(args: argparse.Namespace, run: Any = real_run) -> int:
    from rig.commits.sweep import sweep

    result = sweep(args.repo, args.range, args.scenario, args.out, run, every=args.every,
                   counter=args.counter, ceiling=args.ceiling,
                   overrides=tuple(args.overrides), patches=tuple(args.patches),
                   target=args.target, allow_outside_sources=args.allow_outside_sources,
                   on_point=lambda p: print(f"{p.commit[:10]} {p.verdict:5} "
                                            f"{args.counter}={p.peak}  {p.subject}"),
                   dispatch=dispatch_of(args))
    ceiling = "none" if result.ceiling is None else f"{result.ceiling:g}"
    print(f"ceiling: {ceiling}  sweep: {args.out / 'sweep.json'}  plot: "
          f"{args.out / 'sweep.png'}")
    return 0


def cmd_demo_history(args: argparse.Namespace) -> int:
    from rig.commits.history import build_demo_history

    history = build_demo_history(args.dir, args.commits, args.culprit)
    for index, commit in enumerate(history.commits):
        print(f"{index:3} {commit.short} {commit.subject}")
    print(f"demo history: {history.root} ({len(history.commits)} commits)")
    return 0


COMMANDS = {
    "gate": cmd_gate,
    "bisect": cmd_bisect,
    "bisect-step": cmd_bisect_step,
    "sweep": cmd_sweep,
    "demo-history": cmd_demo_history,
}
