"""The `rig` command: parses arguments, calls the stages, maps outcomes to exit codes.

Exit codes: 0 every check passed, 1 a check failed, 2 bad input, 3 infrastructure error,
130 interrupted.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from rig.errors import InfraError, RigError

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
    run.add_argument("--set", dest="overrides", action="append", default=[],
                     metavar="KEY=VALUE", help="override a scenario field, e.g. load.cps=50")
    run.add_argument("--patch", dest="patches", action="append", default=[], type=Path,
                     metavar="FILE", help="unified diff applied to a copy of the SUT sources")
    run.add_argument("--out", type=Path, help="the run folder (default results/<run-id>)")
    run.add_argument("--repo", type=Path, help="repository root the service sources come from")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--target", choices=("local", "docker"),
                     help="services as local processes or containers (default: the scenario's)")

    matrix = sub.add_parser("matrix", help="run a scenario under every combination of settings")
    matrix.add_argument("scenario", type=Path)
    matrix.add_argument("--axis", dest="axes", action="append", default=[], required=True,
                        metavar="KEY=V1,V2", help="a scenario key and the values to try, e.g. "
                        "services.kamailio.shm_manager=qm,fm,tlsf")
    matrix.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a field in every cell")
    matrix.add_argument("--patch", dest="patches", action="append", default=[], type=Path,
                        metavar="FILE", help="unified diff applied in every cell")
    matrix.add_argument("--out", type=Path, help="the matrix folder (default results/matrix-...)")
    matrix.add_argument("--repo", type=Path, help="repository root the service sources come from")
    matrix.add_argument("--target", choices=("local", "docker"))
    matrix.add_argument("--no-progress", action="store_true", help="no progress bar")

    check = sub.add_parser("check", help="validate a scenario without running it")
    check.add_argument("scenario", type=Path)
    check.add_argument("--set", dest="overrides", action="append", default=[],
                       metavar="KEY=VALUE")

    report = sub.add_parser("report", help="plots and HTML report of one or more run folders")
    report.add_argument("runs", type=Path, nargs="+")
    report.add_argument("--out", type=Path, help="HTML file (default: <first run>/report.html, "
                                                 "or results/compare.html for several)")

    sub.add_parser("gc", help="remove processes and folders left by killed runs")

    images = sub.add_parser("images", help="build the service images (containers/<service>)")
    images.add_argument("services", nargs="*", metavar="SERVICE",
                        help="services to build (default: every folder with a Dockerfile)")
    images.add_argument("--base", default=None, metavar="IMAGE",
                        help="base image (default rig-base:bookworm; or debian:bookworm-slim)")

    from rig.commits.cli import add_parsers
    from rig.pcap_cli import add_parsers as add_pcap_parser

    add_parsers(sub)
    add_pcap_parser(sub)
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    from rig.console import diagnosis_lines, verdict_table
    from rig.runner import RunRequest, run_scenario

    outcome = run_scenario(
        RunRequest(
            scenario_path=args.scenario,
            overrides=tuple(args.overrides),
            patches=tuple(args.patches),
            out=args.out,
            repo=args.repo,
            progress=not args.no_progress and sys.stderr.isatty(),
            target=args.target,
        )
    )
    print(verdict_table(outcome.summary))
    for line in diagnosis_lines(outcome.summary):
        print(line)
    print(f"verdict: {outcome.verdict}")
    print(f"report: {outcome.folder / 'report.html'}")
    return outcome.exit_code


def cmd_matrix(args: argparse.Namespace) -> int:
    import time

    from rig.matrix import matrix_table, parse_axis, run_matrix
    from rig.results import new_run_id
    from rig.runner import RunRequest

    axes = [parse_axis(text) for text in args.axes]
    request = RunRequest(
        scenario_path=args.scenario,
        overrides=tuple(args.overrides),
        patches=tuple(args.patches),
        repo=args.repo,
        progress=not args.no_progress and sys.stderr.isatty(),
        target=args.target,
    )
    out = args.out or Path("results") / new_run_id(f"matrix-{args.scenario.stem}", time.time())
    outcome = run_matrix(
        request, axes, out,
        on_cell=lambda cell: print(f"{cell.name}: {cell.verdict}", flush=True),
    )
    print(matrix_table(outcome.results))
    print(f"report: {outcome.report}")
    return outcome.exit_code


def cmd_check(args: argparse.Namespace) -> int:
    from rig.scenario import load_scenario

    scenario = load_scenario(args.scenario, tuple(args.overrides))
    print(f"ok: {args.scenario} ({scenario.name})")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from rig.console import comparison_table
    from rig.errors import UsageError
    from rig.report import html_report, plot_run
    from rig.results import read_summary

    for folder in args.runs:
        if not (folder / "summary.json").is_file():
            raise UsageError(f"not a run folder (no summary.json): {folder}")
    summaries = [read_summary(folder) for folder in args.runs]
    for folder in args.runs:
        plot_run(folder)
    default = args.runs[0] / "report.html" if len(args.runs) == 1 else Path(
        "results/compare.html")
    out = html_report(args.runs, args.out or default)
    print(comparison_table([f.name for f in args.runs], summaries))
    print(f"report: {out}")
    return 0


def cmd_gc(args: argparse.Namespace) -> int:
    from rig.topology.runtime import collect_garbage

    report = collect_garbage()
    namespaces = (f", {report.namespaces} network namespace(s)" if report.namespaces else "")
    print(f"removed {len(report.runs)} dead run(s), killed {report.processes} process(es), "
          f"deleted {report.folders} folder(s){namespaces}")
    return 0


def cmd_images(args: argparse.Namespace) -> int:
    import time

    from rig.errors import UsageError
    from rig.topology.docker import connect
    from rig.topology.images import DEFAULT_BASE, build_image

    root = Path("containers")
    if not root.is_dir():
        raise UsageError("no containers/ folder here: run `rig images` from the rig checkout")
    available = sorted(p.parent.name for p in root.glob("*/Dockerfile"))
    unknown = sorted(set(args.services) - set(available))
    if unknown:
        raise UsageError(f"no such service: {', '.join(unknown)} "
                         f"(available: {', '.join(available)})")
    client = connect()
    for service in args.services or available:
        started = time.monotonic()
        image = build_image(client, service, root / service, args.base or DEFAULT_BASE)
        state = "built" if image.built else "up to date"
        print(f"{service:<10} {image.tag:<32} {state} in {time.monotonic() - started:.1f} s")
    return 0


COMMANDS = {"run": cmd_run, "matrix": cmd_matrix, "check": cmd_check, "report": cmd_report,
            "gc": cmd_gc, "images": cmd_images}


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    from rig.commits.cli import COMMANDS as COMMIT_COMMANDS
    from rig.pcap_cli import COMMANDS as PCAP_COMMANDS

    args = build_parser().parse_args(argv)
    commands = {**COMMANDS, **COMMIT_COMMANDS, **PCAP_COMMANDS}
    signal.signal(signal.SIGTERM, _terminate)
    # A shell starts background jobs with SIGINT ignored and Python keeps it so; a run must
    # still stop, and clean up, on `kill -INT`.
    signal.signal(signal.SIGINT, signal.default_int_handler)
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
        print("rig: interrupted; everything the run started has been stopped", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
