"""Time to reproduce: how short can a `pin-race` run be and still fail the stock relay,
with the former thread-per-worker burst engine and with the burst sender processes.

For each engine and each duration, N runs of scenarios/pin-race.yaml (`--set duration=D`)
on the stock relay; a run reproduces when it exits 1 (a check failed). The old engine is
the rig of `--old-rev` (by default the last commit with the thread-per-worker engine),
exported with `git archive` into a temporary folder and run with the same Python.
The target is the shortest duration that fails in 99 of 100 runs; with fewer runs the
table gives the observed rate and its 95% Wilson interval, which says how far that is.

    python bench/bench_reproduce.py [--durations 2,3,5,8] [--runs 10]

Prints a table and saves results/bench/bench_reproduce.json (with the load average of
every run). A scheduling race on a shared machine: the machine's load matters.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "results" / "bench" / "bench_reproduce.json"
RUN = "import sys; from rig.cli import main; sys.exit(main(sys.argv[1:]))"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--durations", default="2,3,5,8", help="seconds of load")
    parser.add_argument("--runs", type=int, default=10, help="runs per engine and duration")
    parser.add_argument("--old-rev", default=None,
                        help="revision with the old engine (default: the last one with it)")
    parser.add_argument("--engines", default="old,new", help="old, new or both")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    args.engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if not args.engines or set(args.engines) - {"old", "new"}:
        parser.error("--engines takes old, new or old,new")
    try:
        args.durations = [float(d) for d in args.durations.split(",")]
    except ValueError:
        parser.error("--durations takes seconds like 2,3,5")
    if args.runs < 1 or min(args.durations) <= 0:
        parser.error("--runs must be at least 1 and durations positive")
    return args


def old_revision() -> str:
    """The parent of the commit that removed the thread-per-worker BurstTimer."""
    removed = subprocess.run(
        ["git", "log", "-n1", "--format=%H", "-S", "class BurstTimer", "--",
         "rig/load/bursts.py"], cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.strip()
    if not removed:
        raise SystemExit("cannot find the commit that removed the old burst engine")
    return f"{removed}^"


def export(rev: str, into: Path) -> Path:
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", rev], cwd=ROOT, capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def run_once(tree: Path, duration: float, out: Path) -> int:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    argv = [sys.executable, "-c", RUN, "run", "scenarios/pin-race.yaml",
            "--set", f"duration={duration:g}", "--out", str(out)]
    done = subprocess.run(argv, cwd=tree, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, check=False, timeout=600)
    return done.returncode


def wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - margin), min(1.0, centre + margin)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    rev = args.old_rev or old_revision()
    started = time.monotonic()
    runs = []
    with tempfile.TemporaryDirectory(prefix="reproduce.") as work:
        trees = {"old": export(rev, Path(work) / "old")} if "old" in args.engines else {}
        if "new" in args.engines:
            trees["new"] = ROOT
        for repeat in range(args.runs):
            for duration in args.durations:
                for engine, tree in trees.items():  # alternated: the same load for both
                    load = os.getloadavg()
                    code = run_once(tree, duration, Path(work) / f"{engine}-{duration:g}-{repeat}")
                    runs.append({"engine": engine, "duration": duration, "exit": code,
                                 "loadavg_before": load})
                    print(f"{engine} {duration:g} s: exit {code} (load {load[0]:.1f})",
                          file=sys.stderr, flush=True)
    rows = []
    for engine in args.engines:
        for duration in args.durations:
            mine = [r for r in runs if r["engine"] == engine and r["duration"] == duration]
            valid = [r for r in mine if r["exit"] in (0, 1)]
            hits = sum(1 for r in valid if r["exit"] == 1)
            low, high = wilson(hits, len(valid))
            rows.append({"engine": engine, "duration": duration, "runs": len(valid),
                         "failed": hits, "errors": len(mine) - len(valid),
                         "rate": hits / len(valid) if valid else math.nan,
                         "low": low, "high": high})
    lines = [f"{'engine':>6} {'duration':>8} {'runs':>4} {'failed':>6} {'rate':>6} "
             f"{'95% interval':>16}"]
    for r in rows:
        lines.append(f"{r['engine']:>6} {r['duration']:>7g}s {r['runs']:>4} {r['failed']:>6} "
                     f"{r['rate']:>6.0%} [{r['low']:5.0%}, {r['high']:5.0%}]")
    print("\n".join(lines))
    print(f"stock relay, pin-race; {args.runs} run(s) per cell ({time.monotonic() - started:.0f} s)"
          f"; old engine = {rev}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    temp = args.out.with_name(args.out.name + ".tmp")
    temp.write_text(json.dumps({"schema_version": 1, "benchmark": "reproduce", "old_rev": rev,
                                "time": time.time(), "rows": rows, "runs": runs}, indent=2))
    os.replace(temp, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
