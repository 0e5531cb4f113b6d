"""Soak: one long `rig run`, with the rig's own RSS and open files sampled from /proc.

Starts `rig run` of a scenario (default pin-race with the fix patch, 1800 s) and every
--every seconds reads the rig process's RSS and open file descriptors, the same summed over
its children (the services it started), and the size of the run's series.csv. The slope per
hour of each (least squares, after a warm-up) says whether the rig grows: a flat RSS while
series.csv grows means the samples go to disk, not to memory.

    python bench/soak.py                          # 30 minutes
    python bench/soak.py --duration 60 --every 2  # a quick look

Prints a table and saves results/bench/soak.csv (every sample) and results/bench/soak.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rig.atomic import atomic_open, write_json_atomic  # noqa: E402

OUT = ROOT / "results" / "bench"
SCENARIO = ROOT / "scenarios" / "pin-race.yaml"
PATCH = ROOT / "scenarios" / "patches" / "relay-reserve-slot-first.patch"
METRICS = ("rig_rss_mb", "rig_open_files", "children_rss_mb", "children_open_files",
           "series_csv_mb")


@dataclass(frozen=True)
class Reading:
    """One look at /proc: the rig process, its children (summed) and series.csv on disk."""

    t_s: float
    rig_rss_mb: float
    rig_open_files: int
    children: int
    children_rss_mb: float
    children_open_files: int
    series_csv_mb: float


def _rss_and_fds(proc: psutil.Process) -> tuple[float, int]:
    with proc.oneshot():
        return proc.memory_info().rss / 2**20, proc.num_fds()


def read_once(rig: psutil.Process, series_csv: Path, t: float) -> Reading:
    rss, fds = _rss_and_fds(rig)
    child_rss, child_fds, count = 0.0, 0, 0
    for child in rig.children(recursive=True):
        try:
            c_rss, c_fds = _rss_and_fds(child)
        except psutil.Error:  # ended between the listing and the read
            continue
        child_rss, child_fds, count = child_rss + c_rss, child_fds + c_fds, count + 1
    size = series_csv.stat().st_size / 2**20 if series_csv.exists() else 0.0
    return Reading(round(t, 2), round(rss, 3), fds, count, round(child_rss, 3), child_fds,
                   round(size, 4))


def slope_per_hour(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope, in units per hour; None with fewer than 3 points."""
    if len(points) < 3:
        return None
    t = np.array([p[0] for p in points]) / 3600.0
    v = np.array([p[1] for p in points], dtype=float)
    return float(np.polyfit(t, v, 1)[0])


def steady(readings: list[Reading], warmup_s: float) -> list[Reading]:
    """The readings of the run itself: after the warm-up, while the whole stack is up (so
    neither the start nor the checks and report at the end count)."""
    stack = max((r.children for r in readings), default=0)
    return [r for r in readings if r.t_s >= warmup_s and r.children == stack > 0]


def slopes(readings: list[Reading], warmup_s: float) -> dict[str, dict[str, float | None]]:
    steady_ones = steady(readings, warmup_s)
    out: dict[str, dict[str, float | None]] = {}
    for name in METRICS:
        points = [(r.t_s, float(getattr(r, name))) for r in steady_ones]
        out[name] = {
            "first": points[0][1] if points else None,
            "last": points[-1][1] if points else None,
            "max": max(p[1] for p in points) if points else None,
            "slope_per_hour": slope_per_hour(points),
        }
    return out


def table(result: dict[str, dict[str, float | None]]) -> str:
    def shown(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    lines = ["| while the stack is up | first | last | max | slope per hour |",
             "|---|---|---|---|---|"]
    for name, row in result.items():
        cells = [shown(row[key]) for key in ("first", "last", "max", "slope_per_hour")]
        lines.append(f"| {name} | {' | '.join(cells)} |")
    return "\n".join(lines)


def soak(args: argparse.Namespace, work: Path) -> tuple[list[Reading], int, str]:
    run_folder = work / "run"
    argv = [sys.executable, "-m", "rig.cli", "run", str(args.scenario), "--out",
            str(run_folder), "--no-progress", "--set", f"duration={args.duration:g}"]
    argv += [arg for patch in args.patch for arg in ("--patch", str(patch))]
    log = (work / "rig.log").open("w")
    rig = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    proc = psutil.Process(rig.pid)
    started = time.monotonic()
    readings: list[Reading] = []
    while rig.poll() is None:
        try:
            readings.append(read_once(proc, run_folder / "series.csv",
                                      time.monotonic() - started))
        except psutil.Error:  # the rig ended between poll() and the read
            break
        if args.verbose and len(readings) % 12 == 1:
            print(f"  {readings[-1]}", file=sys.stderr, flush=True)
        try:
            rig.wait(args.every)
        except subprocess.TimeoutExpired:
            pass
    code = rig.wait()
    log.close()
    try:
        verdict = json.loads((run_folder / "summary.json").read_text()).get("verdict", "?")
    except (OSError, ValueError):
        verdict = "no summary"
    return readings, code, verdict


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", type=Path, default=SCENARIO)
    parser.add_argument("--patch", type=Path, action="append", default=None,
                        help=f"default: {PATCH.name}")
    parser.add_argument("--duration", type=float, default=1800.0)
    parser.add_argument("--every", type=float, default=5.0, help="seconds between readings")
    parser.add_argument("--warmup", type=float, default=60.0,
                        help="seconds left out of the slopes (start-up, first shards)")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.every <= 0 or args.warmup < 0:
        parser.error("--duration and --every must be > 0, --warmup >= 0")
    args.patch = args.patch if args.patch is not None else [PATCH]
    args.warmup = min(args.warmup, args.duration / 4)
    return args


def save(readings: list[Reading], payload: dict) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with atomic_open(OUT / "soak.csv", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([f.name for f in fields(Reading)])
        writer.writerows([list(asdict(r).values()) for r in readings])
    write_json_atomic(OUT / "soak.json", payload)
    print(f"saved: {OUT / 'soak.csv'}, {OUT / 'soak.json'}")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="rig-soak-") as work:
        readings, code, verdict = soak(args, Path(work))
    result = slopes(readings, args.warmup)
    machine = {"cpus": os.cpu_count(), "loadavg_before": list(load_before),
               "loadavg_after": list(os.getloadavg())}
    text = (f"Soak: {args.scenario.name} with {', '.join(p.name for p in args.patch)}, "
            f"duration {args.duration:g} s, a reading every {args.every:g} s "
            f"({len(readings)} readings, slopes after {args.warmup:g} s while the stack is "
            f"up); rig exit {code}, "
            f"verdict {verdict}; load average {load_before[0]:.1f} before, "
            f"{machine['loadavg_after'][0]:.1f} after, {os.cpu_count()} CPUs\n\n"
            + table(result))
    print(text)
    save(readings, {"schema_version": 1, "scenario": args.scenario.name,
                    "patches": [p.name for p in args.patch], "duration_s": args.duration,
                    "every_s": args.every, "warmup_s": args.warmup, "rig_exit": code,
                    "verdict": verdict, "machine": machine, "metrics": result})
    return 0 if code in (0, 1) and readings else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
