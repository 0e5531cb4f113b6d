"""Burst alignment: how close to one deadline W workers start their media streams.

Uses the production mechanism: BurstTimer workers whose actions call
MediaEngine.start_streams() for their calls, both directions, as the load driver does.
Each call is a pair of rig endpoints sending to each other on loopback, so the engine's
sender and receiver threads are busy while the workers fire.

Prints p50/p99/max of (fire time - deadline) per worker count and wake mode, and of the
skew (fire time - the burst's earliest fire time), and saves results/bench/bench_bursts.json.
The 1-worker row is the machine's floor: how late one thread wakes from its own timer,
which no number of workers can beat. Timing on a shared machine is noisy: the load
average at the start and the end is saved with the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rig.load.bursts import WAKE_MODES, BurstResult, BurstTimer, spread_summary  # noqa: E402
from rig.load.media import MediaEngine  # noqa: E402

OUT = ROOT / "results" / "bench" / "bench_bursts.json"
HOST = "127.0.0.1"
LEAD_S = 0.02  # fire() is called this long before the deadline, as the driver does
HOLD_S = 0.04  # the burst's streams run this long before their calls end


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,8,32,64",
                        help="comma-separated worker counts; 1 measures the floor")
    parser.add_argument("--bursts", type=int, default=50, help="bursts per configuration")
    parser.add_argument("--streams-per-worker", type=int, default=4,
                        help="calls each worker starts (two streams each)")
    parser.add_argument("--wake", default=",".join(WAKE_MODES), help="wake modes to compare")
    parser.add_argument("--no-realtime", action="store_true", help="never ask for SCHED_FIFO")
    parser.add_argument("--ports", default="40000-47999", help="RTP port range LO-HI")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    try:
        args.workers = [int(w) for w in args.workers.split(",")]
        lo, hi = (int(p) for p in args.ports.split("-"))
    except ValueError:
        parser.error("--workers takes numbers like 8,32,64 and --ports LO-HI")
    args.ports = (lo, hi)
    args.wake = [w for w in args.wake.split(",") if w]
    unknown = set(args.wake) - set(WAKE_MODES)
    if unknown:
        parser.error(f"unknown wake mode {sorted(unknown)} (allowed: {', '.join(WAKE_MODES)})")
    if args.bursts < 1 or args.streams_per_worker < 1:
        parser.error("--bursts and --streams-per-worker must be at least 1")
    return args


def open_calls(media: MediaEngine, calls: int) -> list[int]:
    """Pairs of endpoints sending to each other; returns every port, both directions."""
    ports = []
    for _ in range(calls):
        a, b = media.open_endpoint(), media.open_endpoint()
        media.prepare_stream(a, (HOST, b))
        media.prepare_stream(b, (HOST, a))
        ports += [a, b]
    return ports


def run_bursts(media: MediaEngine, timer: BurstTimer, bursts: int,
               streams_per_worker: int) -> list[BurstResult]:
    results = []
    for index in range(bursts):
        groups = [open_calls(media, streams_per_worker) for _ in range(timer.workers)]
        actions = [lambda g=g: media.start_streams(g) for g in groups]
        results.append(timer.fire(index, time.monotonic() + LEAD_S, actions))
        time.sleep(HOLD_S)
        for group in groups:
            for port in group:
                media.close_endpoint(port)
    return results


def measure(args: argparse.Namespace, workers: int, wake: str) -> dict:
    with MediaEngine(HOST, args.ports) as media, \
            BurstTimer(workers, wake=wake, realtime=not args.no_realtime) as timer:
        run_bursts(media, timer, 2, args.streams_per_worker)  # warm-up, not counted
        started = time.monotonic()
        results = run_bursts(media, timer, args.bursts, args.streams_per_worker)
        elapsed = time.monotonic() - started
        realtime = timer.realtime_workers == workers
    per_burst_p99 = sorted(r.spread_p99_us for r in results)
    return {
        "workers": workers,
        "wake": wake,
        "default": wake == WAKE_MODES[0],
        "realtime": realtime,
        "bursts": args.bursts,
        "streams_per_burst": workers * args.streams_per_worker * 2,
        **spread_summary(results),
        "median_burst_p99_us": per_burst_p99[len(per_burst_p99) // 2],
        "seconds": elapsed,
    }


def table(rows: list[dict]) -> str:
    lines = [f"{'workers':>7} {'wake':>6} {'rt':>3} {'streams':>7} {'p50 µs':>9} "
             f"{'p99 µs':>9} {'max µs':>9} {'skew p50':>9} {'skew p99':>9}"]
    for r in rows:
        mark = "*" if r["default"] else " "
        lines.append(
            f"{r['workers']:>7} {r['wake']:>5}{mark} {'yes' if r['realtime'] else 'no':>3} "
            f"{r['streams_per_burst']:>7} {r['spread_p50_us']:>9.0f} "
            f"{r['spread_p99_us']:>9.0f} {r['spread_max_us']:>9.0f} "
            f"{r['skew_p50_us']:>9.0f} {r['skew_p99_us']:>9.0f}"
        )
    lines.append("* = the mode the load driver uses; p50/p99/max = fire time - deadline, skew = "
                 "fire time - the burst's first fire, all workers of all bursts")
    return "\n".join(lines)


def write_json_atomically(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
        json.dump(data, f, indent=2)
    os.replace(f.name, path)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    load_before = os.getloadavg()
    rows = [measure(args, w, wake) for w in args.workers for wake in args.wake]
    report = {
        "schema_version": 1,
        "benchmark": "bursts",
        "time": time.time(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "target": {"workers": 32, "p99_us": 100, "stretch_p99_us": 50},
        "rows": rows,
    }
    print(table(rows))
    print(f"load average before/after: {load_before[0]:.1f} / {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cpus (shared machine: numbers are noisy)")
    write_json_atomically(args.out, report)
    print(f"saved: {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
