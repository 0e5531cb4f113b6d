"""The options every run-like command takes (run, matrix, gate, bisect, bisect-step,
sweep), declared once, and the RunRequest they make."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

TARGETS = ("local", "docker")


def add_run_options(parser: argparse.ArgumentParser, *, repo_required: bool = False) -> None:
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a scenario field, e.g. load.cps=50")
    parser.add_argument("--patch", dest="patches", action="append", default=[], type=Path,
                        metavar="FILE", help="unified diff applied to a copy of the SUT sources")
    parser.add_argument("--repo", type=Path, required=repo_required, metavar="DIR",
                        help="repository root the service sources come from")
    parser.add_argument("--target", choices=TARGETS,
                        help="services as local processes or containers (default: the scenario's)")
    parser.add_argument("--allow-outside-sources", action="store_true",
                        help="a service `source` may be an absolute path outside the "
                             "repository (copied into the run's temporary folder)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_dispatch_options(parser: argparse.ArgumentParser, *, jobs_flag: str = "--jobs",
                         jobs_help: str = "runs at once (default 1)") -> None:
    """How many runs at once and where: a local pool, or Ray tasks on a cluster."""
    parser.add_argument(jobs_flag, dest="jobs", type=int, metavar="N", help=jobs_help)
    parser.add_argument("--cluster", metavar="ADDRESS",
                        help="run as Ray tasks on this Ray cluster (host:port, ray://host:port; "
                             "default $RAY_ADDRESS); `local`: a Ray on this machine, on "
                             "127.0.0.1 only, for the command's length")


def dispatch_of(args: argparse.Namespace) -> Any:
    """The rig.distribute.Dispatch of --jobs/--cluster; RAY_ADDRESS stands for --cluster."""
    from rig.distribute import Dispatch

    return Dispatch(args.jobs, args.cluster or os.environ.get("RAY_ADDRESS") or None)


def show_progress(args: argparse.Namespace) -> bool:
    return not args.no_progress and sys.stderr.isatty()


def run_request(args: argparse.Namespace, scenario: Path, **fields: Any) -> Any:
    """The RunRequest of the shared options; `fields` sets the rest (out, results_root...)."""
    from rig.runner import RunRequest

    values: dict[str, Any] = {
        "scenario_path": scenario,
        "overrides": tuple(args.overrides),
        "patches": tuple(args.patches),
        "repo": args.repo,
        "progress": show_progress(args),
        "target": args.target,
        "allow_outside_sources": args.allow_outside_sources,
    }
    values.update(fields)
    return RunRequest(**values)
