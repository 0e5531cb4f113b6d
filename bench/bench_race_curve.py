"""How tight a burst must be to provoke the pin race: phantom shards per burst on the stock
relay against the burst's width K (streams per burst) and deliberate per-packet jitter.

Each cell runs scenarios/pin-race.yaml through the rig (kmod + the stock relay, the burst
sender of rig/load/burstsender.py) with K/2 calls per burst (both legs: K first packets),
`bursts.jitter` J (each first packet leaves uniformly within J after the deadline) and
kmod's ceiling raised to 32 pins (kmod-max-shm-areas-32.patch, so the abort does not cut
the count short; the relay is stock). Phantom shards per burst = the `no_phantom_shards`
check's observed excess (pins beyond the shards the pool can reach; they never come back)
over the bursts fired.

    python bench/bench_race_curve.py [--widths 2,4,8,16,32] [--jitters 0,50e-6,...] [--runs 2]

Prints a table, saves results/bench/bench_race_curve.json and, with --plot FILE, a PNG.
A scheduling race on a shared machine: the load average is saved with every run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rig.runner import RunRequest, run_scenario  # noqa: E402

OUT = ROOT / "results" / "bench" / "bench_race_curve.json"
PIN_RACE = ROOT / "scenarios" / "pin-race.yaml"
CEILING_32 = ROOT / "scenarios" / "patches" / "kmod-max-shm-areas-32.patch"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="2,4,8,16,32", help="streams per burst (even)")
    parser.add_argument("--jitters", default="0,50e-6,200e-6,1e-3,5e-3", help="seconds")
    parser.add_argument("--runs", type=int, default=2, help="runs per cell")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load a run")
    parser.add_argument("--every", type=float, default=1.0, help="seconds between bursts")
    parser.add_argument("--plot", type=Path, default=None, help="save the curve as this PNG")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    try:
        args.widths = [int(k) for k in args.widths.split(",")]
        args.jitters = [float(j) for j in args.jitters.split(",")]
    except ValueError:
        parser.error("--widths takes even numbers like 2,4,8 and --jitters seconds like 0,1e-3")
    if any(k < 2 or k % 2 for k in args.widths) or any(j < 0 or j > 0.1 for j in args.jitters):
        parser.error("widths must be even and >= 2; jitters within 0..0.1 s")
    if args.runs < 1 or args.duration <= args.every:
        parser.error("--runs must be at least 1 and --duration longer than --every")
    return args


def one_run(width: int, jitter: float, args: argparse.Namespace, out: Path) -> dict:
    overrides = (f"duration={args.duration:g}", f"bursts.every={args.every:g}",
                 f"bursts.workers={width // 2}", "bursts.streams_per_worker=1",
                 f"bursts.jitter={jitter:.6f}", "bursts.hold=2.0")
    load_before = os.getloadavg()
    outcome = run_scenario(RunRequest(scenario_path=PIN_RACE, overrides=overrides,
                                      patches=(CEILING_32,), out=out, progress=False))
    summary = outcome.summary
    checks = {c.name: c for c in summary.checks}
    phantoms = float(checks["no_phantom_shards"].observed or 0.0)
    bursts = int(summary.bursts.count)
    return {"width": width, "jitter_s": jitter, "phantoms": phantoms, "bursts": bursts,
            "per_burst": phantoms / bursts if bursts else 0.0,
            "arrival_or_send_spread_p99_us": summary.bursts.spread_p99_us,
            "crashed": not checks["relay_alive"].passed,
            "loadavg_before": load_before, "loadavg_after": os.getloadavg()}


def cells(runs: list[dict], widths: list[int], jitters: list[float]) -> list[dict]:
    out = []
    for width in widths:
        for jitter in jitters:
            mine = [r for r in runs if r["width"] == width and r["jitter_s"] == jitter]
            out.append({"width": width, "jitter_s": jitter, "runs": len(mine),
                        "per_burst": statistics.mean(r["per_burst"] for r in mine),
                        "phantoms": sum(r["phantoms"] for r in mine),
                        "bursts": sum(r["bursts"] for r in mine)})
    return out


def table(rows: list[dict], widths: list[int], jitters: list[float]) -> str:
    by = {(r["width"], r["jitter_s"]): r for r in rows}
    head = f"{'K':>3} " + " ".join(f"{label(j):>9}" for j in jitters)
    lines = ["phantom shards per burst (stock relay), by width K and jitter", head,
             "-" * len(head)]
    for width in widths:
        lines.append(f"{width:>3} " + " ".join(f"{by[(width, j)]['per_burst']:>9.2f}"
                                               for j in jitters))
    return "\n".join(lines)


def label(jitter: float) -> str:
    if jitter == 0:
        return "0"
    return f"{jitter * 1e3:g} ms" if jitter >= 1e-3 else f"{jitter * 1e6:g} µs"


def plot(rows: list[dict], widths: list[int], jitters: list[float], path: Path) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4))
    axes = figure.subplots()
    for jitter in jitters:
        ys = [next(r["per_burst"] for r in rows if r["width"] == w and r["jitter_s"] == jitter)
              for w in widths]
        axes.plot(widths, ys, marker="o", label=f"jitter {label(jitter)}")
    axes.set_xscale("log", base=2)
    axes.set_xticks(widths, [str(w) for w in widths])
    axes.set_xlabel("streams per burst (K)")
    axes.set_ylabel("phantom shards per burst")
    axes.set_title("Pin race on the stock relay: burst width and jitter")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    started = time.monotonic()
    runs = []
    with tempfile.TemporaryDirectory(prefix="race_curve.") as work:
        for repeat in range(args.runs):
            for width in args.widths:
                for jitter in args.jitters:
                    out = Path(work) / f"{width}-{jitter:g}-{repeat}"
                    runs.append(one_run(width, jitter, args, out))
                    last = runs[-1]
                    print(f"K={width} jitter={label(jitter)}: {last['phantoms']:g} phantoms in "
                          f"{last['bursts']} bursts (load {last['loadavg_after'][0]:.1f})",
                          file=sys.stderr, flush=True)
    rows = cells(runs, args.widths, args.jitters)
    text = table(rows, args.widths, args.jitters)
    print(text)
    print(f"{args.runs} run(s) of {args.duration:g} s per cell, a burst every {args.every:g} s; "
          f"{time.monotonic() - started:.0f} s in all; scheduling race: machine load matters")
    report = {"schema_version": 1, "benchmark": "race_curve", "time": time.time(),
              "settings": {"runs": args.runs, "duration": args.duration, "every": args.every},
              "cells": rows, "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    temp = args.out.with_name(args.out.name + ".tmp")
    temp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(temp, args.out)
    if args.plot is not None:
        plot(rows, args.widths, args.jitters, args.plot)
        print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
