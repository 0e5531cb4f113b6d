"""The `rig` command: parses arguments, calls the stages, maps outcomes to exit codes.

Exit codes: 0 every check passed, 1 a check failed, 2 bad input, 3 infrastructure error,
130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from rig import interrupts
from rig.errors import InfraError, RigError
from rig.options import add_dispatch_options, add_run_options, dispatch_of, run_request

EXIT_INTERRUPTED = 130


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"rig: error: {message} (see `rig {self.prog.split()[-1]} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="rig", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)

    run = sub.add_parser("run", help="run one scenario and write a run folder")
    run.add_argument("scenario", type=Path)
    run.add_argument("--out", type=Path, help="the run folder (default results/<run-id>)")
    add_run_options(run)
    run.add_argument("--cluster", metavar="ADDRESS",
                     help="the generator processes as Ray actors on this Ray cluster, one per "
                          "unit of its `rig_generator` resource (default $RAY_ADDRESS); "
                          "`local`: a Ray on this machine, on 127.0.0.1 only")

    matrix = sub.add_parser("matrix", help="run a scenario under every combination of settings")
    matrix.add_argument("scenario", type=Path)
    matrix.add_argument("--axis", dest="axes", action="append", default=[], required=True,
                        metavar="KEY=V1,V2", help="a scenario key and the values to try, e.g. "
                        "services.kamailio.shm_manager=qm,fm,tlsf")
    matrix.add_argument("--out", type=Path, help="the matrix folder (default results/matrix-...)")
    add_run_options(matrix)
    add_dispatch_options(matrix, jobs_help="cells run at once (default 1)")

    check = sub.add_parser("check", help="validate a scenario without running it")
    check.add_argument("scenario", type=Path)
    check.add_argument("--set", dest="overrides", action="append", default=[],
                       metavar="KEY=VALUE")

    report = sub.add_parser("report", help="plots and HTML report of one or more run folders")
    report.add_argument("runs", type=Path, nargs="+")
    report.add_argument("--out", type=Path, help="HTML file (default: <first run>/report.html, "
                                                 "or results/compare.html for several)")

    gc = sub.add_parser("gc", help="remove processes and folders left by killed runs")
    gc.add_argument("--cluster", metavar="ADDRESS",
                    help="also kill the generator actors and remove the placement groups "
                         "that killed runs left on this Ray cluster (default $RAY_ADDRESS)")

    images = sub.add_parser("images", help="build the service images (containers/<service>)")
    images.add_argument("services", nargs="*", metavar="SERVICE",
                        help="services to build (default: every folder with a Dockerfile)")
    images.add_argument("--suite", default="bookworm",
                        help="Debian suite of the base: bookworm, trixie or sid; part of the "
                             "tag (default bookworm)")
    images.add_argument("--base", default=None, metavar="IMAGE",
                        help="base image (default rig-base:SUITE; or debian:SUITE-slim)")

    from rig.commits.cli import add_parsers
    from rig.pcap_cli import add_parsers as add_pcap_parser

    add_parsers(sub)
    add_pcap_parser(sub)
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    from rig.console import diagnosis_lines, verdict_table
    from rig.runner import run_scenario

    cluster = args.cluster or os.environ.get("RAY_ADDRESS") or None
    outcome = run_scenario(run_request(args, args.scenario, out=args.out, cluster=cluster))
    print(verdict_table(outcome.summary))
    for line in diagnosis_lines(outcome.summary):
        print(line)
    if outcome.summary.error:
        print(f"error: {outcome.summary.error}")
    print(f"verdict: {outcome.verdict}")
    print(f"report: {outcome.folder / 'report.html'}")
    return outcome.exit_code


def cmd_matrix(args: argparse.Namespace) -> int:
    import time

    from rig.matrix import matrix_table, parse_axis, run_matrix
    from rig.results import new_run_id

    axes = [parse_axis(text) for text in args.axes]
    dispatch = dispatch_of(args)
    request = run_request(args, args.scenario)
    out = args.out or Path("results") / new_run_id(f"matrix-{args.scenario.stem}", time.time())
    outcome = run_matrix(
        request, axes, out,
        on_cell=lambda cell: print(f"{cell.name}: {cell.verdict}", flush=True),
        dispatch=dispatch,
    )
    print(matrix_table(outcome.results))
    print(f"report: {outcome.report}")
    return outcome.exit_code


def cmd_check(args: argparse.Namespace) -> int:
    from rig.plan import port_layout, stack_plan
    from rig.scenario import load_scenario

    scenario = load_scenario(args.scenario, tuple(args.overrides))
    port_layout(scenario, stack_plan(scenario))  # a scenario no run's address can hold
    print(f"ok: {args.scenario} ({scenario.name})")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from rig.console import comparison_table
    from rig.report import report_runs

    summaries, out = report_runs(args.runs, args.out)
    print(comparison_table([f.name for f in args.runs], summaries))
    print(f"report: {out}")
    return 0


def cmd_gc(args: argparse.Namespace) -> int:
    from rig.distribute import LOCAL_CLUSTER
    from rig.errors import UsageError
    from rig.topology.runtime import collect_garbage

    cluster = args.cluster or os.environ.get("RAY_ADDRESS") or None
    if cluster == LOCAL_CLUSTER:
        raise UsageError("gc --cluster needs a cluster's address: `local` is a Ray that "
                         "lives only as long as its command")
    if cluster is not None:  # a wrong address is said before anything is removed
        from rig.distribute_ray import check_reachable

        check_reachable(cluster)
    report = collect_garbage()
    namespaces = (f", {report.namespaces} network namespace(s)" if report.namespaces else "")
    print(f"removed {len(report.runs)} dead run(s), killed {report.processes} process(es), "
          f"deleted {report.folders} folder(s){namespaces}")
    if cluster is not None:
        from rig.load.ray_driver import remove_leftovers

        actors, groups = remove_leftovers(cluster, lambda line: print(line, flush=True))
        print(f"cluster {cluster}: killed {actors} actor(s), removed {groups} "
              "placement group(s)")
    return 0


def cmd_images(args: argparse.Namespace) -> int:
    from rig.topology.images import build_service_images

    def show(service: str, tag: str, built: bool, seconds: float) -> None:
        state = "built" if built else "up to date"
        print(f"{service:<10} {tag:<40} {state} in {seconds:.1f} s")

    build_service_images(Path("containers"), args.services, args.base, show, args.suite)
    return 0


COMMANDS = {"run": cmd_run, "matrix": cmd_matrix, "check": cmd_check, "report": cmd_report,
            "gc": cmd_gc, "images": cmd_images}


def main(argv: Sequence[str] | None = None) -> int:
    from rig.commits.cli import COMMANDS as COMMIT_COMMANDS
    from rig.pcap_cli import COMMANDS as PCAP_COMMANDS

    args = build_parser().parse_args(argv)
    commands = {**COMMANDS, **COMMIT_COMMANDS, **PCAP_COMMANDS}
    # A shell starts background jobs with SIGINT ignored and Python keeps it so; a run must
    # still stop, and clean up, on `kill -INT` too.
    with interrupts.installed():
        try:
            return commands[args.command](args)
        except InfraError as exc:
            print(f"rig: infrastructure error: {exc}", file=sys.stderr)
            if exc.logs:
                print(exc.logs, file=sys.stderr)
            return exc.exit_code
        except RigError as exc:
            print(f"rig: error: {exc}", file=sys.stderr)
            return exc.exit_code
        except KeyboardInterrupt:
            print("rig: interrupted; everything the run started has been stopped",
                  file=sys.stderr)
            return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
